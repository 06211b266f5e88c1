"""``sfnet compare``: SFNet k sweep vs dense CNN + PCA, AGN classification, feature probes."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.options import (
    add_field_options,
    add_progress_option,
    add_run_options,
    given_options,
    progress_wanted,
)
from sfnet.config import SECTIONS, CompareConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="check the paper's claims: k sweep vs PCA, AGN SVM, probes",
        description=(
            "Train SFNets for several k (with repeats) and a dense CNN per target group on the "
            "same split, then compare: SFNet vs linear regression on the top-k principal "
            "components of the dense features (the paper's Table 2 and Figure 5), linear-SVM "
            "AGN classification from the top features vs all active features, and probes from "
            "other features (the dense CNN's, or --features) to the targets and to the SFNet "
            "features. Rerunning with the same folder reuses finished runs and resumes killed "
            "ones. Repeat r of the sweep trains with --seed + r, the dense CNN with --seed + 1000."
        ),
    )
    p.add_argument("data", help="dataset folder (catalog + images/) or packed .npz array file")
    p.add_argument(
        "--out", type=Path, required=True, help="comparison folder (created or continued)"
    )
    add_field_options(p, CompareConfig, "compare")
    # the run template: every training option except those the comparison sets per run
    add_run_options(p, skip=("data.path", "data.target", "model.k"))
    add_progress_option(p)
    p.set_defaults(func=_compare)


def compare_config_from_args(args: argparse.Namespace) -> CompareConfig:
    """The CompareConfig named by the CLI options (validated)."""
    given = given_options(args, "compare")
    for section in SECTIONS:
        given |= given_options(args, section)  # run-template fields, by their unique names
    if given.get("nproc") is not None:
        given["launcher"] = "torchrun"
    return CompareConfig.create(quick=bool(given.pop("quick", False)), path=args.data, **given)


def _compare(args: argparse.Namespace) -> int:
    from sfnet.workflows.compare import run_comparison

    cfg = compare_config_from_args(args)
    from sfnet.lock import folder_lock

    with folder_lock(args.out, "sfnet compare"):
        res = run_comparison(args.out, cfg, progress=progress_wanted(args))
    print(f"trained {len(res.trained)} run(s), reused {len(res.reused)} finished run(s)")
    print((args.out / "table_rmse.md").read_text(), end="")
    from sfnet.workflows.sparsity import factors_markdown

    print(f"interpretability (interpretability.md): {factors_markdown(res.factors)}", end="")
    if not res.agn.empty:
        for _, r in res.agn.iterrows():
            print(
                f"AGN SVM ({r['features']}, {r['n_features']} features): "
                f"accuracy {r['accuracy']:.3f}, F1 {r['f1']:.3f}"
            )
    atlas = f"; feature atlases: {args.out / 'atlas.html'}" if cfg.atlas else ""
    print(f"tables and figure: {args.out}{atlas}")
    return 0
