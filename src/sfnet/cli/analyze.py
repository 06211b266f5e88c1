"""``sfnet analyze``: the feature analysis of a trained run (files in the run folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.options import (
    add_device_option,
    add_field_options,
    add_progress_option,
    device_wanted,
    given_options,
    progress_wanted,
)


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """The positional ``run``, the options of every :class:`AnalysisOptions` setting
    (dest ``analysis.FIELD``), ``--all``, ``--device`` and ``--progress``."""
    from sfnet.workflows.analyze import AnalysisOptions

    p.add_argument("run", help="a trained sparse run folder (sfnet train --k K)")
    # ``split`` is a switch on the command line, not a value: --all sets it to "all" (the
    # field's other value, "val", is its default), so it is this one hand-written mapping.
    p.add_argument(
        "--all",
        dest="analysis.split",
        action="store_const",
        const="all",
        default=None,
        help="analyse all galaxies instead of the run's validation split",
    )
    add_field_options(p, AnalysisOptions, "analysis")
    add_device_option(p)
    add_progress_option(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="activations, feature table, equations, ground truth and figures of a run",
        description=(
            "Compute the sparse activations of a trained SFNet on its validation split and write "
            "activations.npz, features.csv, equations.md/json, groundtruth.json (synthetic "
            "data), figures/ and analysis.json into the run folder."
        ),
    )
    add_analysis_options(p)
    p.set_defaults(func=_analyze)


def analysis_options(args: argparse.Namespace):
    """The :class:`~sfnet.workflows.analyze.AnalysisOptions` of the typed options (validated)."""
    from sfnet.workflows.analyze import AnalysisOptions

    opts = AnalysisOptions(**given_options(args, "analysis"))
    opts.validate()
    return opts


def options_given(args: argparse.Namespace) -> bool:
    """Whether an option that changes the analysis was typed (``report`` then re-analyses;
    ``--batch-size`` alone changes only the speed)."""
    return bool(set(given_options(args, "analysis")) - {"batch_size"})


def _analyze(args: argparse.Namespace) -> int:
    from sfnet.lock import folder_lock
    from sfnet.workflows.analyze import analyze_run

    with folder_lock(Path(args.run), "sfnet analyze"):
        s = analyze_run(
            Path(args.run),
            analysis_options(args),
            progress=progress_wanted(args),
            device=device_wanted(args),
        )
    print(f"analysed {s['n_analysed']} galaxies of {args.run} in {s['seconds']:.1f} s")
    print(f"frequent features ({s['stats']} statistics): {', '.join(s['frequent_features'])}")
    for rec in s["variance_explained"]:
        if rec["m"] == s["k"]:
            print(
                f"top {rec['m']} features explain {100 * rec['r2_prediction_mean']:.2f}% of the "
                "prediction variance"
            )
    rm = s["rmse"]
    if "model" in rm:
        for name in s["target_names"]:
            print(
                f"  {name}: RMSE {rm['model'][name]:.4f} (predict the mean "
                f"{rm['predict_mean'][name]:.4f})"
            )
    print(f"wrote {Path(args.run) / 'analysis.json'} and figures/")
    return 0
