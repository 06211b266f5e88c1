"""``sfnet demo``: synthesize a survey, train SFNets on it and write their feature atlases."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "demo",
        help="synthesize a survey, train SFNets on it and report (minutes on a laptop CPU)",
        description=(
            "Synthesize the default survey (cached under --root), train an SFNet on bpt_lines "
            "(k=4) and on metallicity (k=4), and print each model's validation RMSE beside "
            "predicting the mean and the oracle (true factors). Results stay under --root."
        ),
    )
    d.add_argument(
        "--root", default="demo-output", help="folder for the data and runs [default ./demo-output]"
    )
    d.add_argument("--n", type=int, default=None, help="survey size [default: DemoConfig.n]")
    d.add_argument(
        "--epochs", type=int, default=None, help="epochs per training [default: DemoConfig]"
    )
    d.add_argument("--overwrite", action="store_true", help="retrain runs that already exist")
    d.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    d.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    import dataclasses

    from sfnet.workflows.demo import DemoConfig, run_demo

    cfg = DemoConfig(root=Path(args.root))
    if args.n is not None:
        cfg = dataclasses.replace(cfg, n=args.n)
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    progress = not args.no_progress and sys.stderr.isatty()
    run_demo(cfg, progress=progress, overwrite=args.overwrite)
    return 0
