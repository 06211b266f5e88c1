"""``sfnet synth``: the synthetic survey, its preview grid and oracle."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.options import add_progress_option, progress_wanted
from sfnet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write the built-in synthetic survey (GalSim images with ground truth)",
        description=(
            "Render a synthetic galaxy survey from physical scaling relations into a dataset "
            "folder in the real format (galaxies.csv with MPA-JHU columns plus true_* ground-truth "
            "columns, images/{objID}.png). With --preview COLUMN, instead draw a PNG grid of "
            "galaxies of an existing folder sorted by COLUMN. With --oracle, print how well the "
            "true factors alone predict each target."
        ),
    )
    p.add_argument("--out", help="dataset folder to create, or the PNG file with --preview")
    p.add_argument("--n", type=int, default=6000, help="number of galaxies [default 6000]")
    p.add_argument("--size", type=int, default=64, help="image side in pixels [default 64]")
    p.add_argument("--seed", type=int, default=0, help="survey seed [default 0]")
    p.add_argument(
        "--workers", type=int, default=None, help="rendering processes [default: all cores]"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out folder (a synthetic survey), or --preview's PNG",
    )
    add_progress_option(p)
    p.add_argument(
        "--preview",
        metavar="COLUMN",
        help="write a PNG grid of galaxies of --data sorted by COLUMN (e.g. true_cos_inc) to --out",
    )
    p.add_argument(
        "--preview-n", type=int, default=40, help="galaxies in the preview grid [default 40]"
    )
    p.add_argument(
        "--oracle",
        action="store_true",
        help="print the oracle and predict-the-mean RMSE of --data for both targets",
    )
    p.add_argument("--data", help="existing dataset folder (for --preview and --oracle)")
    p.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from sfnet.data import synthetic
    from sfnet.io import check_output_file

    if args.preview or args.oracle:
        if not args.data:
            raise UserError("--preview and --oracle need --data DATASET_FOLDER")
        if args.preview:
            if not args.out:
                raise UserError("--preview needs --out FILE.png")
            if args.preview_n < 1:
                raise UserError(f"--preview-n must be >= 1, got {args.preview_n}")
            check_output_file(args.out, overwrite=args.overwrite, inputs=[args.data])
            out = synthetic.preview(Path(args.data), args.preview, Path(args.out), n=args.preview_n)
            print(f"wrote {out}")
        if args.oracle:
            _print_oracle(Path(args.data))
        return 0
    if not args.out:
        raise UserError(
            "give --out DATASET_FOLDER (or --preview COLUMN --data DATA --out FILE.png)"
        )
    synthetic.check_synth_args(args.n, args.size, args.seed, args.workers or 1)
    import time

    t0 = time.perf_counter()
    out = synthetic.synthesize(
        Path(args.out),
        args.n,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        progress=progress_wanted(args),
        overwrite=args.overwrite,
    )
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} galaxies ({args.size} px) to {out} in {dt:.1f} s")
    return 0


def _print_oracle(data: Path) -> None:
    from sfnet.analysis.oracle import oracle_scores
    from sfnet.data.catalog import find_catalog, read_catalog

    cat = read_catalog(find_catalog(data))
    for target in ("bpt_lines", "metallicity"):
        r = oracle_scores(cat, target)
        print(f"{target} (n_train {r.n_train}, n_val {r.n_val}):")
        for name in r.oracle:
            print(f"  {name:<20} oracle {r.oracle[name]:.3f}   predict-mean {r.mean[name]:.3f}")
