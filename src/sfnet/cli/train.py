"""``sfnet train`` and ``sfnet predict``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sfnet.cli.options import add_run_options, apply_run_options, given_options
from sfnet.config import NONE, SECTIONS, RunConfig
from sfnet.errors import RunFolderError, UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an SFNet (or the dense baseline) into a run folder",
        description=(
            "Train a Sparse Feature Network with the paper's recipe (RMSE on standardized targets, "
            "Ranger, flat+cosine lr, flips, seeded 80/20 split). Writes config.toml, "
            "model.safetensors, model.json and metrics.jsonl into --out. Works under "
            "'torchrun --nproc_per_node N -m sfnet train ...' (DistributedDataParallel). "
            "Every setting of config.toml is an option; options override --config."
        ),
    )
    add_run_options(p)
    p.add_argument(
        "--dense", action="store_true", help="train the dense baseline (same as --k none)"
    )
    p.add_argument(
        "--config", type=Path, help="start from this config.toml; other options override it"
    )
    p.add_argument("--out", type=Path, help="run folder to create, e.g. runs/NAME")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue a killed run from its last checkpoint (uses its stored config)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

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


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig named by the CLI options (on top of --config when given), validated."""
    cfg = RunConfig.load(args.config) if args.config else RunConfig()
    if args.dense:
        setattr(args, "model.k", NONE)
    return apply_run_options(cfg, args)


def resume_config(args: argparse.Namespace) -> RunConfig:
    """The stored config of ``--resume RUN``; only ``--data`` (the data moved; checked against
    the run's data fingerprint) may change it."""
    from sfnet.runs import CONFIG

    run = args.resume
    if args.out and args.out.resolve() != run.resolve():
        raise UserError("--resume RUN continues RUN in place; do not also give a different --out")
    if not (run / CONFIG).is_file():
        raise RunFolderError(f"{run}: not a run folder (no {CONFIG}) — nothing to resume")
    changed = [f"{s}.{k}" for s in SECTIONS for k in given_options(args, s) if k != "data"]
    changed += ["--config"] if args.config else []
    changed += ["model.k"] if args.dense else []
    if changed:
        raise UserError(
            f"--resume RUN continues RUN with its stored {CONFIG}; {', '.join(changed)} cannot "
            "change (only --data, where the data moved): start a new run instead"
        )
    cfg = RunConfig.load(run / CONFIG)
    if getattr(args, "data.data"):
        cfg.data.data = getattr(args, "data.data")
    return cfg


def _train(args: argparse.Namespace) -> int:
    from sfnet.runs import META, RunMeta
    from sfnet.train import fit

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    logging.basicConfig(
        level=logging.INFO if main_rank else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    if args.resume:
        cfg, out = resume_config(args), args.resume
    else:
        if not args.out:
            raise UserError("--out RUN_FOLDER is required")
        if not getattr(args, "data.data") and not args.config:
            raise UserError("--data is required (a dataset folder or .npz file)")
        cfg, out = config_from_args(args), args.out

    def report(rec: dict) -> None:
        rmse = ", ".join(f"{k}={v:.4f}" for k, v in rec["val_rmse"].items())
        print(
            f"epoch {rec['epoch']:3d}  train_loss={rec['train_loss']:.4f}  val_rmse: {rmse}  "
            f"dead_features={rec['dead_features']}  {rec['seconds']:.1f}s",
            flush=True,
        )

    res = fit(
        cfg,
        out,
        overwrite=args.overwrite,
        resume=bool(args.resume),
        progress=not args.quiet,
        on_epoch=report,
    )
    if not main_rank:
        return 0

    meta = RunMeta.load(out / META)
    base = meta.extra.get("val_rmse_predict_mean", {})
    for name, v in res.val_rmse.items():
        b = base.get(name)
        tail = f" (predicting the mean: {b:.4f})" if b is not None else ""
        print(f"{name}: validation RMSE {v:.4f}{tail}")
    print(f"run folder: {out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from sfnet.data.dataset import load_dataset
    from sfnet.io import atomic_write
    from sfnet.predict import predict
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


def table_of_predictions(objid: np.ndarray, names: list[str], pred) -> pd.DataFrame:
    """objID, ``pred_<target>`` columns and ``feature_j``/``activation_j`` (j = 1..k) columns."""
    table = pd.DataFrame({"objID": objid})
    for i, name in enumerate(names):
        table[f"pred_{name}"] = pred.predictions[:, i]
    if pred.indices is not None:
        active = pred.values > 0
        for j in range(pred.indices.shape[1]):
            table[f"feature_{j + 1}"] = np.where(active[:, j], pred.indices[:, j], -1).astype(
                np.int16
            )
            table[f"activation_{j + 1}"] = np.where(active[:, j], pred.values[:, j], 0.0).astype(
                np.float32
            )
    return table
