"""``sfnet analyze``: the feature analysis of a trained run (files in the run folder)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.options import (
    add_device_option,
    add_progress_option,
    device_wanted,
    progress_wanted,
)
from sfnet.errors import UserError


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="a trained sparse run folder (sfnet train --k K)")
    p.add_argument(
        "--all",
        action="store_true",
        help="analyse all galaxies instead of the run's validation split",
    )
    p.add_argument(
        "--dense-run",
        dest="dense",
        metavar="RUN",
        default=None,
        help="a dense run folder (sfnet train --dense): compare its PCA components and raw "
        "neurons with the true latent factors (synthetic data)",
    )
    p.add_argument("--pdf", action="store_true", help="also write every figure as PDF")
    p.add_argument(
        "--n-features",
        dest="features",
        metavar="N",
        type=int,
        default=None,
        help="frequent features that get figures and a card [default: k]",
    )
    p.add_argument(
        "--recompute",
        action="store_true",
        help="recompute activations even if activations.npz matches the model",
    )
    p.add_argument(
        "--batch-size", type=int, default=256, help="galaxies per forward pass [default 256]"
    )
    p.add_argument(
        "--redundancy-rho",
        type=float,
        default=None,
        help="two features are redundant when the Spearman rho of their A_f over the galaxies "
        "where either fires exceeds this [default 0.9]",
    )
    p.add_argument(
        "--stats",
        choices=("post-topk", "pre-topk"),
        default="post-topk",
        help="activation statistics (f_activated, A_f, top-9 grids, BPT colours) from the "
        "post-TopK activations the head sees [default], or from the pooled features before "
        "TopK, non-zero = activated (the paper's notebooks)",
    )
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
    from sfnet.workflows.analyze import AnalysisOptions

    if args.features is not None and args.features <= 0:
        raise UserError(f"--n-features must be positive, got {args.features}")
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    rho = args.redundancy_rho
    if rho is not None and not -1.0 <= rho <= 1.0:
        raise UserError(f"--redundancy-rho must lie in [-1, 1], got {rho}")
    extra = {} if rho is None else {"redundancy_rho": rho}
    return AnalysisOptions(
        split="all" if args.all else "val",
        n_features=args.features,
        dense=args.dense,
        pdf=args.pdf,
        recompute=args.recompute,
        batch_size=args.batch_size,
        **extra,
        stats=args.stats,
    )


def options_given(args: argparse.Namespace) -> bool:
    return bool(
        args.all
        or args.dense
        or args.pdf
        or args.features
        or args.recompute
        or args.redundancy_rho is not None
        or args.stats != "post-topk"
    )


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
