"""``sfnet predict``: predictions and active features of a trained run for a dataset."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sfnet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "predict",
        help="predict targets and active features for a dataset",
        description="Write objID, predictions (physical units) and the active features "
        "(indices and values; index -1 where fewer than k are active) to a Parquet, CSV, FITS or ECSV file (by extension; FITS and ECSV carry units).",
    )
    q.add_argument("run", type=Path, help="trained run folder")
    q.add_argument("--data", help="dataset folder or .npz (default: the run's own data)")
    q.add_argument(
        "--out", type=Path, required=True, help="output file (.parquet, .csv, .fits or .ecsv)"
    )
    q.add_argument("--batch-size", type=int, default=256, help="galaxies per forward pass")
    q.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device [default cpu]")
    q.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from sfnet.outputs.tables import TABLE_FORMATS, write_table
    from sfnet.predict import predict_dataset
    from sfnet.runs import load_run

    if args.out.suffix.lower() not in TABLE_FORMATS:  # refused before any work is done
        raise UserError(f"{args.out}: output must end in {', '.join(TABLE_FORMATS)}")
    run = load_run(args.run, device=args.device)
    dcfg = run.config.data
    if args.data:
        dcfg = dataclasses.replace(dcfg, path=str(args.data))
    table = predict_dataset(run, dcfg, batch_size=args.batch_size)
    write_table(table, args.out)
    print(f"wrote {len(table)} predictions to {args.out}")
    return 0
