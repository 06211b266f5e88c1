"""``sfnet predict``: predictions and active features of a trained run for a dataset."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sfnet.cli.options import add_device_option, add_field_options, device_wanted, given_options
from sfnet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    from sfnet.config import PredictConfig

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
    q.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (never an input)"
    )
    add_field_options(q, PredictConfig, "predict")
    add_device_option(q)
    q.set_defaults(func=_predict)


def predict_config_from_args(args: argparse.Namespace):
    """The :class:`~sfnet.config.PredictConfig` of the typed options (validated)."""
    from sfnet.config import PredictConfig

    cfg = PredictConfig(**given_options(args, "predict"))
    cfg.validate()
    return cfg


def _predict(args: argparse.Namespace) -> int:
    from sfnet.io import check_output_file
    from sfnet.outputs.tables import TABLE_FORMATS, write_table
    from sfnet.predict import predict_dataset
    from sfnet.runs import CONFIG, META, WEIGHTS, load_run

    cfg = predict_config_from_args(args)
    if args.out.suffix.lower() not in TABLE_FORMATS:  # refused before any work is done
        raise UserError(f"{args.out}: output must end in {', '.join(TABLE_FORMATS)}")
    run_files = [args.run / name for name in (CONFIG, META, WEIGHTS)]
    check_output_file(args.out, overwrite=args.overwrite, inputs=[args.data, *run_files])
    run = load_run(args.run, device=device_wanted(args))
    dcfg = run.config.data
    if args.data:
        dcfg = dataclasses.replace(dcfg, path=str(args.data))
    # the run's own data is an input too (known once the run is loaded)
    check_output_file(args.out, overwrite=args.overwrite, inputs=[dcfg.path])
    table = predict_dataset(run, dcfg, batch_size=cfg.batch_size)
    write_table(table, args.out, units=run.units)
    print(f"wrote {len(table)} predictions to {args.out}")
    return 0
