"""``sfnet train``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from sfnet.config import SCHEDULES, TARGETS, DataConfig, ModelConfig, RunConfig, TrainConfig
from sfnet.errors import RunFolderError, UserError


def _bool_flag(p: argparse.ArgumentParser, name: str, help_text: str) -> None:
    p.add_argument(
        f"--{name}",
        dest=name.replace("-", "_"),
        action=argparse.BooleanOptionalAction,
        default=None,
        help=help_text,
    )


def register(sub: argparse._SubParsersAction) -> None:
    d, m, t = DataConfig(), ModelConfig(), TrainConfig()
    p = sub.add_parser(
        "train",
        help="train an SFNet (or the dense baseline) into a run folder",
        description=(
            "Train a Sparse Feature Network with the paper's recipe (RMSE on standardized targets, "
            "Ranger, flat+cosine lr, flips, seeded 80/20 split). Writes config.toml, "
            "model.safetensors, model.json and metrics.jsonl into --out. Works under "
            "'torchrun --nproc_per_node N -m sfnet train ...' (DistributedDataParallel)."
        ),
    )
    p.add_argument("--data", help="dataset folder (catalog + images/) or packed .npz array file")
    p.add_argument(
        "--target",
        choices=TARGETS,
        default=None,
        help=f"metallicity (oh_p50, dex) or bpt_lines (log10 of four line fluxes) [default {d.target}]",
    )
    p.add_argument(
        "--k", type=int, default=None, help=f"active features per galaxy [default {m.k}]"
    )
    p.add_argument("--dense", action="store_true", help="train the dense baseline (no TopK layer)")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"passes over the training split [default {t.epochs}]",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help=f"global batch size [default {t.batch_size}]"
    )
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate [default {t.lr}]")
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=None,
        help=f"flat_cos (paper) or one_cycle (paper's public code) [default {t.schedule}]",
    )
    p.add_argument(
        "--seed", type=int, default=None, help=f"seed of init, shuffling, flips [default {t.seed}]"
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help=f"seed of the train/val split [default {d.split_seed}]",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help=f"validation share [default {d.val_fraction}]",
    )
    p.add_argument(
        "--crop", type=int, default=None, help=f"centre crop in pixels [default {d.crop}]"
    )
    p.add_argument(
        "--resize", type=int, default=None, help="resize images to this size before cropping"
    )
    p.add_argument(
        "--pretrained",
        default=None,
        help="'imagenet' (torchvision weights; torch hub cache) or a path to a resnet18 state dict",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="[default auto]")
    _bool_flag(p, "amp", "bfloat16 autocast (default: on for CUDA, off on CPU)")
    _bool_flag(p, "channels-last", "channels-last memory format (default: on for CUDA, off on CPU)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"batch prefetch threads [default {t.num_workers}]",
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


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig named by the CLI options (on top of --config when given)."""
    cfg = RunConfig.load(args.config) if args.config else RunConfig()
    overrides = {
        "data": {
            "data": args.data,
            "target": args.target,
            "split_seed": args.split_seed,
            "val_fraction": args.val_fraction,
            "crop": args.crop,
            "resize": args.resize,
        },
        "model": {"k": args.k, "pretrained": args.pretrained},
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "schedule": args.schedule,
            "seed": args.seed,
            "device": args.device,
            "amp": args.amp,
            "channels_last": args.channels_last,
            "num_workers": args.workers,
        },
    }
    for section, values in overrides.items():
        obj = getattr(cfg, section)
        for key, value in values.items():
            if value is not None:
                setattr(obj, key, str(value) if key == "data" else value)
    if args.dense:
        cfg.model.k = None
    cfg.validate()
    return cfg


def _train(args: argparse.Namespace) -> int:
    from sfnet.runs import CONFIG
    from sfnet.train import fit

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    logging.basicConfig(
        level=logging.INFO if main_rank else logging.WARNING,
        format="%(message)s",
        stream=sys.stderr,
    )
    if args.resume:
        if args.out and args.out != args.resume:
            raise UserError(
                "--resume RUN continues RUN in place; do not also give a different --out"
            )
        if not (args.resume / CONFIG).is_file():
            raise RunFolderError(
                f"{args.resume}: not a run folder (no config.toml) — nothing to resume"
            )
        from sfnet.config import RunConfig as _RC

        cfg, out = _RC.load(args.resume / CONFIG), args.resume
    else:
        if not args.out:
            raise UserError("--out RUN_FOLDER is required")
        if not args.data and not args.config:
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
    from sfnet.runs import META, RunMeta

    meta = RunMeta.load(out / META)
    base = meta.extra.get("val_rmse_predict_mean", {})
    for name, v in res.val_rmse.items():
        b = base.get(name)
        tail = f" (predicting the mean: {b:.4f})" if b is not None else ""
        print(f"{name}: validation RMSE {v:.4f}{tail}")
    print(f"run folder: {out}")
    return 0
