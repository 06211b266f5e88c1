"""``sfnet predict``: predictions and active features of a trained run for a dataset."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from sfnet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser(
        "predict",
        help="predict targets and active features for a dataset",
        description="Write objID, predictions (physical units) and the active features "
        "(indices and values; index -1 where fewer than k are active) to a Parquet or CSV file.",
    )
    q.add_argument("run", type=Path, help="trained run folder")
    q.add_argument("--data", help="dataset folder or .npz (default: the run's own data)")
    q.add_argument("--out", type=Path, required=True, help="output file (.parquet or .csv)")
    q.add_argument("--batch-size", type=int, default=256, help="galaxies per forward pass")
    q.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device [default cpu]")
    q.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from sfnet.data.dataset import load_dataset
    from sfnet.io import atomic_write
    from sfnet.predict import predict, table_of_predictions
    from sfnet.runs import load_run

    run = load_run(args.run, device=args.device)
    dcfg = run.config.data
    if args.data:
        dcfg = dataclasses.replace(dcfg, data=str(args.data))
    data = load_dataset(dcfg, require_targets=False)
    if data.images.shape[-1] != run.meta.crop:
        raise UserError(
            f"{dcfg.data}: images are {data.images.shape[-1]} px, the model was trained on {run.meta.crop} px"
        )
    pred = predict(run, data.images, batch_size=args.batch_size)
    table = table_of_predictions(data.objid, run.meta.target_names, pred)
    if data.fingerprint == run.meta.data_fingerprint:
        split = np.full(len(data), "train", dtype=object)
        split[run.split(len(data))[1]] = "val"
        table.insert(1, "split", split)
    suffix = args.out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UserError(f"{args.out}: output must end in .parquet or .csv")
    if suffix == ".parquet":
        atomic_write(args.out, lambda tmp: table.to_parquet(tmp, index=False))
    else:
        atomic_write(args.out, lambda tmp: table.to_csv(tmp, index=False))
    print(f"wrote {len(table)} predictions to {args.out}")
    return 0
