"""``sfnet reproduce``: the paper's published numbers next to sfnet's, on one dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.options import (
    add_device_option,
    add_field_options,
    add_progress_option,
    given_options,
    progress_wanted,
)
from sfnet.config import PAPER_PRETRAINED, CompareConfig, DataConfig, TrainConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="train the paper's models and comparison; write paper_vs_sfnet.md/.csv",
        description=(
            "Train (or reuse) the paper's two models (bpt_lines and metallicity, k=4, the "
            "paper's recipe, ImageNet init), the Table 2 comparison (k sweep x repeats, dense "
            "CNN + PCA), the AGN classification and the probes, with the paper's own definitions, "
            "and write OUT/paper_vs_sfnet.md and .csv: every number the paper publishes, sfnet's "
            "value on DATA and how it was computed. Target groups the data lacks get rows that "
            "say why. Rerunning with the same OUT reuses finished runs."
        ),
    )
    p.add_argument("data", help="dataset folder (catalog + images/) or packed .npz array file")
    p.add_argument("--out", type=Path, required=True, help="output folder (created or continued)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="minutes, not days: ks 2 4, 1 repeat, 2 epochs, 20-tree probes (explicit options win)",
    )
    p.add_argument(
        "--pretrained",
        default=PAPER_PRETRAINED,
        help=f"'{PAPER_PRETRAINED}' (the paper), 'none' (random init) or a resnet18 state-dict "
        f"path [default {PAPER_PRETRAINED}; fails clearly when the weights are absent]",
    )
    # the settings a reproduction may change, generated from their declarations
    add_field_options(
        p, CompareConfig, "compare", only=("ks", "repeats", "features", "probe_trees", "nproc")
    )
    add_field_options(p, DataConfig, "data", only=("crop", "resize"))
    add_field_options(p, TrainConfig, "train", only=("epochs", "batch_size"))
    add_device_option(p)
    add_progress_option(p)
    p.set_defaults(func=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    from sfnet.workflows.reproduce import run_reproduce

    given = {k: v for s in ("compare", "data", "train") for k, v in given_options(args, s).items()}
    pretrained = None if str(args.pretrained).lower() in ("none", "random") else args.pretrained
    res = run_reproduce(
        args.out,
        str(args.data),
        quick=args.quick,
        pretrained=pretrained,
        progress=progress_wanted(args),
        device=args.device,
        launcher="torchrun" if given.get("nproc") else None,
        **given,
    )
    n_val = res.table["sfnet_value"].notna().sum()
    print(f"{n_val} of {len(res.table)} paper numbers have an sfnet value on this data")
    print(f"wrote {args.out / 'paper_vs_sfnet.md'} and .csv")
    return 0
