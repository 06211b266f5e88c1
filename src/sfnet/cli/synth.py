"""``sfnet synth``: the synthetic survey, its preview grid and oracle."""

from __future__ import annotations

import argparse
from pathlib import Path

from sfnet.cli.options import add_field_options, add_progress_option, given_options, progress_wanted
from sfnet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    from sfnet.data.synthetic import SynthConfig

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
    add_field_options(p, SynthConfig, "synth")
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
        "--oracle",
        action="store_true",
        help="print the oracle and predict-the-mean RMSE of --data for both targets",
    )
    p.add_argument("--data", help="existing dataset folder (for --preview and --oracle)")
    p.set_defaults(func=_synth)


def synth_config_from_args(args: argparse.Namespace):
    """The :class:`~sfnet.data.synthetic.SynthConfig` of the typed options (validated)."""
    from sfnet.data.synthetic import SynthConfig

    cfg = SynthConfig(**given_options(args, "synth"))
    cfg.validate()
    return cfg


def _synth(args: argparse.Namespace) -> int:
    from sfnet.data import synthetic
    from sfnet.io import check_output_file

    cfg = synth_config_from_args(args)

    if args.preview or args.oracle:
        if not args.data:
            raise UserError("--preview and --oracle need --data DATASET_FOLDER")
        if args.preview:
            if not args.out:
                raise UserError("--preview needs --out FILE.png")
            check_output_file(args.out, overwrite=args.overwrite, inputs=[args.data])
            out = synthetic.preview(Path(args.data), args.preview, Path(args.out), n=cfg.preview_n)
            print(f"wrote {out}")
        if args.oracle:
            _print_oracle(Path(args.data))
        return 0
    if not args.out:
        raise UserError(
            "give --out DATASET_FOLDER (or --preview COLUMN --data DATA --out FILE.png)"
        )
    synthetic.check_synth_args(cfg.n, cfg.size, cfg.seed, cfg.workers or 1)
    import time

    t0 = time.perf_counter()
    out = synthetic.synthesize(
        Path(args.out),
        cfg.n,
        size=cfg.size,
        seed=cfg.seed,
        workers=cfg.workers,
        progress=progress_wanted(args),
        overwrite=args.overwrite,
    )
    dt = time.perf_counter() - t0
    print(f"wrote {cfg.n} galaxies ({cfg.size} px) to {out} in {dt:.1f} s")
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
