"""``sfnet compare``: SFNet k sweep vs dense CNN + PCA, AGN classification, feature probes."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.config import TARGETS


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
            "features. Rerunning with the same folder reuses finished runs and resumes killed ones."
        ),
    )
    p.add_argument("data", help="dataset folder (catalog + images/) or packed .npz array file")
    p.add_argument(
        "--out", type=Path, required=True, help="comparison folder (created or continued)"
    )
    p.add_argument(
        "--targets", nargs="+", choices=TARGETS, default=None, help="target groups [default: both]"
    )
    p.add_argument(
        "--ks",
        type=int,
        nargs="+",
        default=None,
        help="SFNet k values = numbers of principal components [default 2 3 4 6 8; quick 2 4]",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="trainings per k from scratch (seeds seed..seed+R-1) [default 3; quick 1]",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="epochs per training [default 20; quick 2]"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="reduced comparison: ks 2 4, 1 repeat, 2 epochs (explicit options win)",
    )
    p.add_argument("--crop", type=int, default=None, help="centre crop in pixels [default 144]")
    p.add_argument(
        "--resize", type=int, default=None, help="resize images to this size before cropping"
    )
    p.add_argument(
        "--val-fraction", type=float, default=None, help="validation share [default 0.2]"
    )
    p.add_argument(
        "--split-seed", type=int, default=None, help="seed of the shared split [default 0]"
    )
    p.add_argument("--batch-size", type=int, default=None, help="galaxies per step [default 64]")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate [default 0.1]")
    p.add_argument(
        "--pretrained",
        default=None,
        help="'imagenet' or a resnet18 state-dict path [default: random init]",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="[default auto]")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of repeat 0 (repeat r uses seed+r, the dense CNN seed+1000) [default 0]",
    )
    p.add_argument(
        "--features",
        default=None,
        help="extra features to probe: .parquet (objID + columns), .npz (objID, features) "
        "or structured .npy, keyed by objID",
    )
    p.add_argument(
        "--agn-top",
        type=int,
        default=None,
        help="most frequent SFNet features for the small AGN classifier [default 4]",
    )
    p.add_argument(
        "--probe-trees",
        type=int,
        default=None,
        help="boosting rounds of the XGBoost probes [default 300]",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="train each run with torchrun --nproc_per_node N (DistributedDataParallel) "
        "instead of in this process",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from sfnet.compare import CompareConfig, run_comparison

    cfg = CompareConfig.create(
        quick=args.quick,
        data=str(args.data),
        targets=args.targets,
        ks=args.ks,
        repeats=args.repeats,
        epochs=args.epochs,
        crop=args.crop,
        resize=args.resize,
        val_fraction=args.val_fraction,
        split_seed=args.split_seed,
        batch_size=args.batch_size,
        lr=args.lr,
        pretrained=args.pretrained,
        device=args.device,
        seed=args.seed,
        features=args.features,
        agn_top=args.agn_top,
        probe_trees=args.probe_trees,
        launcher="torchrun" if args.nproc else None,
        nproc=args.nproc,
    )
    res = run_comparison(args.out, cfg, progress=not args.quiet)
    print(f"trained {len(res.trained)} run(s), reused {len(res.reused)} finished run(s)")
    print((args.out / "table_rmse.md").read_text(), end="")
    if not res.agn.empty:
        for _, r in res.agn.iterrows():
            print(
                f"AGN SVM ({r['features']}, {r['n_features']} features): "
                f"accuracy {r['accuracy']:.3f}, F1 {r['f1']:.3f}"
            )
    print(f"tables and figure: {args.out}")
    return 0
