"""``sfnet reproduce``: the paper's published numbers next to sfnet's, on one dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


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
        default="imagenet",
        help="'imagenet' (the paper), 'none' (random init) or a resnet18 state-dict path "
        "[default imagenet; fails clearly when the weights are absent]",
    )
    p.add_argument("--ks", type=int, nargs="+", default=None, help="[default 2 3 4 6 8; 4 always]")
    p.add_argument("--repeats", type=int, default=None, help="trainings per k [default 3]")
    p.add_argument("--epochs", type=int, default=None, help="epochs per training [default 20]")
    p.add_argument("--crop", type=int, default=None, help="centre crop in pixels [default 144]")
    p.add_argument("--resize", type=int, default=None, help="resize images before cropping")
    p.add_argument("--batch-size", type=int, default=None, help="galaxies per step [default 64]")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="[default auto]")
    p.add_argument(
        "--features",
        default=None,
        help="other features to probe: 'zoobot' (the paper's; computed from the cached "
        "hf_hub:mwalmsley/zoobot-encoder-resnet18) or a .parquet/.npz/.npy file by objID",
    )
    p.add_argument("--probe-trees", type=int, default=None, help="XGBoost rounds [default 300]")
    p.add_argument(
        "--nproc", type=int, default=None, help="train each run with torchrun --nproc_per_node N"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_reproduce)


def _reproduce(args: argparse.Namespace) -> int:
    from sfnet.workflows.reproduce import run_reproduce

    pretrained = None if str(args.pretrained).lower() in ("none", "random") else args.pretrained
    res = run_reproduce(
        args.out,
        str(args.data),
        quick=args.quick,
        pretrained=pretrained,
        progress=not args.quiet,
        ks=args.ks,
        repeats=args.repeats,
        epochs=args.epochs,
        crop=args.crop,
        resize=args.resize,
        batch_size=args.batch_size,
        device=args.device,
        features=args.features,
        probe_trees=args.probe_trees,
        launcher="torchrun" if args.nproc else None,
        nproc=args.nproc,
    )
    n_val = res.table["sfnet_value"].notna().sum()
    print(f"{n_val} of {len(res.table)} paper numbers have an sfnet value on this data")
    print(f"wrote {args.out / 'paper_vs_sfnet.md'} and .csv")
    return 0
