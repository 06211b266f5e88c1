"""``sfnet train``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sfnet.cli.options import (
    add_progress_option,
    add_run_options,
    apply_run_options,
    given_options,
    progress_wanted,
)
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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run folder (refused if it holds files sfnet did not write)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue a killed run from its last checkpoint (uses its stored config)",
    )
    add_progress_option(p)
    p.set_defaults(func=_train)


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
    changed = [f"{s}.{k}" for s in SECTIONS for k in given_options(args, s) if k != "path"]
    changed += ["--config"] if args.config else []
    changed += ["model.k"] if args.dense else []
    if changed:
        raise UserError(
            f"--resume RUN continues RUN with its stored {CONFIG}; {', '.join(changed)} cannot "
            "change (only --data, where the data moved): start a new run instead"
        )
    cfg = RunConfig.load(run / CONFIG)
    if getattr(args, "data.path"):
        cfg.data.path = getattr(args, "data.path")
    return cfg


def _train(args: argparse.Namespace) -> int:
    from sfnet.runs import META, RunMeta
    from sfnet.train import fit

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    if args.resume:
        cfg, out = resume_config(args), args.resume
    else:
        if not args.out:
            raise UserError("--out RUN_FOLDER is required")
        if not getattr(args, "data.path") and not args.config:
            raise UserError("--data is required (a dataset folder or .npz file)")
        cfg, out = config_from_args(args), args.out

    def report(rec: dict) -> None:
        rmse = ", ".join(f"{k}={v:.4f}" for k, v in rec["val_rmse"].items())
        print(
            f"epoch {rec['epoch']:3d}  train_loss={rec['train_loss']:.4f}  val_rmse: {rmse}  "
            f"dead_features={rec['dead_features']} (never in any galaxy's top-k this epoch)  "
            f"{rec['seconds']:.1f}s",
            flush=True,
        )

    res = fit(
        cfg,
        out,
        overwrite=args.overwrite,
        resume=bool(args.resume),
        progress=progress_wanted(args),
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
