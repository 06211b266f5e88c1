"""``sfnet demo``: synthesize a survey, train SFNets on it and write their feature atlases."""

from __future__ import annotations

import argparse

from sfnet.cli.options import add_field_options, add_progress_option, given_options, progress_wanted


def register(sub: argparse._SubParsersAction) -> None:
    from sfnet.workflows.demo import DemoConfig

    d = sub.add_parser(
        "demo",
        help="synthesize a survey, train SFNets on it and report (minutes on a laptop CPU)",
        description=(
            "Synthesize the default survey (cached under --root), train an SFNet on bpt_lines "
            "(k=4) and on metallicity (k=4), and print each model's validation RMSE beside "
            "predicting the mean and the oracle (true factors). Results stay under --root."
        ),
    )
    add_field_options(d, DemoConfig, "demo")
    d.add_argument("--overwrite", action="store_true", help="retrain runs that already exist")
    add_progress_option(d)
    d.set_defaults(func=_demo)


def demo_config_from_args(args: argparse.Namespace):
    """The :class:`~sfnet.workflows.demo.DemoConfig` of the typed options (validated)."""
    from sfnet.workflows.demo import DemoConfig

    cfg = DemoConfig(**given_options(args, "demo"))
    cfg.validate()
    return cfg


def _demo(args: argparse.Namespace) -> int:
    from sfnet.workflows.demo import run_demo

    run_demo(demo_config_from_args(args), progress=progress_wanted(args), overwrite=args.overwrite)
    return 0
