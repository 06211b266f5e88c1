"""``fit()``: the paper's recipe with checkpoints, exact resume and DistributedDataParallel.

RMSE loss on standardized targets (mean/std of the training split), Ranger (RAdam + Lookahead),
flat + cosine learning rate (or one-cycle), random flips, seeded 80/20 split. One run = one
folder (see :mod:`sfnet.runs`). Under ``torchrun`` each process trains on its shard of every
epoch (torch's DistributedSampler); rank 0 logs and writes. ``batch_size`` is the global batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sfnet.config import ConfigError, RunConfig
from sfnet.data.batches import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalization,
    channel_stats,
    epoch_order,
    iter_batches,
    random_flips,
    split_indices,
)
from sfnet.data.dataset import GalaxyData, load_dataset
from sfnet.distributed import DistContext, init_distributed
from sfnet.errors import RunFolderError
from sfnet.io import append_jsonl, atomic_write, atomic_write_bytes
from sfnet.model import BACKBONE_DIMS, SparseFeatureNet
from sfnet.optim import make_scheduler, ranger
from sfnet.runs import (
    CHECKPOINT,
    CONFIG,
    META,
    METRICS,
    WEIGHTS,
    RunMeta,
    is_finished,
    read_metrics,
    save_weights,
)

log = logging.getLogger("sfnet.train")

#: Smallest target standard deviation used for standardization (avoids dividing by ~0).
MIN_TARGET_STD = 1e-6


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        run_dir: the run folder.
        val_rmse: validation RMSE per target, physical units, after the last epoch.
        history: the ``metrics.jsonl`` records.
    """

    run_dir: Path
    val_rmse: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


def rmse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Root mean squared error over all elements (the paper's loss)."""
    return torch.sqrt(torch.mean((pred.float() - target.float()) ** 2))


def _resolve_device(name: str) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available")
    return torch.device("cuda")


def _prepare_folder(config: RunConfig, out: Path, overwrite: bool, resume: bool) -> RunConfig:
    """Create or check the run folder; returns the config to train with."""
    stored = out / CONFIG
    if resume and stored.is_file():
        saved = RunConfig.load(stored)
        if saved.to_dict() != config.to_dict():
            raise RunFolderError(
                f"{out}: the stored config.toml differs from the requested one; resume with the "
                "stored config (sfnet train --resume RUN) or use --overwrite to start again"
            )
        return saved
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunFolderError(
                f"{out}: run folder exists and is not empty; use --overwrite to replace it or "
                "--resume to continue it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    config.save(stored)
    return config


def fit(
    config: RunConfig,
    out: Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
    data: GalaxyData | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train an SFNet (or the dense baseline, ``config.model.k = None``) into run folder ``out``.

    Args:
        config: the run configuration; validated here.
        out: run folder. Refused if it exists and is not empty, unless ``overwrite`` (start
            again) or ``resume`` (continue from ``checkpoint.pt``; a finished run is returned
            as it is; a folder without a checkpoint starts from scratch).
        progress: show a tqdm progress bar per epoch (rank 0 only).
        data: already-loaded galaxies (else loaded from ``config.data``).
        on_epoch: called with each epoch's metrics record (rank 0 only).
    """
    config.validate()
    out = Path(out)
    tcfg = config.train
    device = _resolve_device(tcfg.device)
    ctx = init_distributed(device.type)
    try:
        if ctx.enabled and device.type == "cuda":
            device = torch.device("cuda", ctx.local_rank)
            torch.cuda.set_device(device)
        if ctx.is_main:
            config = _prepare_folder(config, out, overwrite, resume)
            if resume and is_finished(out):
                return FitResult(out, _last_rmse(out), read_metrics(out / METRICS))
        ctx.barrier()
        if not ctx.is_main:
            config = RunConfig.load(out / CONFIG)
        return _fit(config, out, device, ctx, data, progress, on_epoch)
    finally:
        ctx.close()


def _last_rmse(out: Path) -> dict[str, float]:
    hist = read_metrics(out / METRICS)
    return dict(hist[-1]["val_rmse"]) if hist else {}


def _fit(
    config: RunConfig,
    out: Path,
    device: torch.device,
    ctx: DistContext,
    data: GalaxyData | None,
    progress: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> FitResult:
    tcfg, mcfg, dcfg = config.train, config.model, config.data
    if data is None:
        data = load_dataset(dcfg)
    if ctx.is_main:
        for cut in data.cuts:
            log.info("cut: %s", cut.describe())
    n = len(data)
    train_idx, val_idx = split_indices(n, dcfg.val_fraction, dcfg.split_seed)
    y = np.asarray(data.y, dtype=np.float64)
    t_mean = y[train_idx].mean(axis=0)
    t_std = np.maximum(y[train_idx].std(axis=0), MIN_TARGET_STD)
    if mcfg.pretrained is not None:
        norm = Normalization(IMAGENET_MEAN, IMAGENET_STD)
    else:
        norm = channel_stats(data.images, train_idx)
        log.info(
            "random initialisation (no pretrained weights); per-channel image statistics from the training split"
        )
    y_std = torch.from_numpy(((y - t_mean) / t_std).astype(np.float32))
    crop = int(data.images.shape[-1])
    meta = RunMeta(
        k=mcfg.k,
        d=BACKBONE_DIMS[mcfg.backbone],
        backbone=mcfg.backbone,
        target=dcfg.target,
        target_names=list(data.target_names),
        target_mean=t_mean.tolist(),
        target_std=t_std.tolist(),
        image_mean=list(norm.mean),
        image_std=list(norm.std),
        split_seed=dcfg.split_seed,
        val_fraction=dcfg.val_fraction,
        data_fingerprint=data.fingerprint,
        n_train=len(train_idx),
        n_val=len(val_idx),
        crop=crop,
        resize=dcfg.resize,
    )
    baseline = np.sqrt(np.mean((y[val_idx] - t_mean) ** 2, axis=0))
    meta.extra["world_size"] = ctx.world_size
    meta.extra["val_rmse_predict_mean"] = dict(
        zip(data.target_names, baseline.tolist(), strict=True)
    )

    if tcfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(tcfg.seed)
    model = SparseFeatureNet(mcfg.k, len(data.target_names), mcfg.backbone, mcfg.pretrained)
    amp = tcfg.amp if tcfg.amp is not None else device.type == "cuda"
    channels_last = tcfg.channels_last if tcfg.channels_last is not None else device.type == "cuda"
    model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net: nn.Module = model
    if ctx.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    local_batch = tcfg.batch_size // ctx.world_size
    if local_batch < 1:
        raise ConfigError(
            f"train.batch_size ({tcfg.batch_size}) is smaller than the number of processes ({ctx.world_size})"
        )
    shard = math.ceil(len(train_idx) / ctx.world_size)  # DistributedSampler pads to equal shards
    # A last batch of one galaxy is dropped: batch norm cannot train on a single sample.
    shard_used = shard - 1 if shard % local_batch == 1 and shard > 1 else shard
    steps_per_epoch = math.ceil(shard_used / local_batch)
    opt = ranger(model.parameters(), tcfg)
    sched = make_scheduler(opt, tcfg, steps_per_epoch * tcfg.epochs)

    start_epoch = 0
    ckpt_path = out / CHECKPOINT
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt["data_fingerprint"] != data.fingerprint:
            raise RunFolderError(
                f"{out}: the data changed since this run started (fingerprint "
                f"{ckpt['data_fingerprint']} -> {data.fingerprint}); start a new run"
            )
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        start_epoch = int(ckpt["epoch"])
        log.info("resuming %s from the end of epoch %d", out, start_epoch)
    if ctx.is_main:
        history = read_metrics(out / METRICS)[:start_epoch]
        atomic_write_bytes(out / METRICS, "".join(json.dumps(r) + "\n" for r in history).encode())
        meta.epochs_completed = start_epoch
        meta.save(out / META)
    else:
        history = []

    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if amp and device.type == "cuda"
        else contextlib.nullcontext()
    )
    y_dev = y_std.to(device)
    for epoch in range(start_epoch, tcfg.epochs):
        t0 = time.perf_counter()
        net.train()
        order = train_idx[epoch_order(len(train_idx), epoch, tcfg.seed, ctx.world_size, ctx.rank)]
        order = order[:shard_used]
        gen = torch.Generator().manual_seed(tcfg.seed * 1_000_003 + epoch * 101 + ctx.rank)
        fired = torch.zeros(model.d, dtype=torch.int32, device=device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        batches = iter_batches(data.images, order, local_batch, prefetch=tcfg.num_workers)
        bar = None
        if progress and ctx.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{tcfg.epochs}", leave=False)
        for rows, xb in batches:
            x = norm.apply(xb.to(device, non_blocking=True))
            if tcfg.flips:
                x = random_flips(x, gen)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                outp = net(x)
            loss = rmse_loss(outp.predictions, y_dev[torch.from_numpy(rows).to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            fired |= (outp.features.detach() > 0).any(dim=0).to(torch.int32)
            loss_sum += loss.detach().double() * len(rows)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if bar is not None:
            bar.close()
        n_seen = torch.tensor(float(len(order)), dtype=torch.float64, device=device)
        ctx.all_reduce_sum(loss_sum)
        ctx.all_reduce_sum(n_seen)
        ctx.all_reduce_max(fired)
        val_rmse = _validate(
            model,
            data.images,
            val_idx,
            y,
            meta,
            norm,
            device,
            ctx,
            local_batch * 2,
            channels_last,
            autocast,
        )
        record = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum.item() / max(1.0, n_seen.item())),
            "val_rmse": dict(zip(data.target_names, val_rmse.tolist(), strict=True)),
            "dead_features": int(model.d - int(fired.sum().item())),
            "lr": float(sched.get_last_lr()[0]),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        if ctx.is_main:
            _checkpoint(out / CHECKPOINT, model, opt, sched, epoch + 1, data.fingerprint)
            append_jsonl(out / METRICS, record)
            meta.epochs_completed = epoch + 1
            meta.save(out / META)
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
        ctx.barrier()
    if ctx.is_main:
        save_weights(model, out / WEIGHTS)
        meta.save(out / META)
        (out / CHECKPOINT).unlink(missing_ok=True)
    ctx.barrier()
    last = history[-1]["val_rmse"] if history else {}
    return FitResult(out, dict(last), history)


@torch.no_grad()
def _validate(
    model: SparseFeatureNet,
    images,
    val_idx: np.ndarray,
    y: np.ndarray,
    meta: RunMeta,
    norm: Normalization,
    device: torch.device,
    ctx: DistContext,
    batch_size: int,
    channels_last: bool,
    autocast,
) -> np.ndarray:
    """Validation RMSE per target in physical units (val rows sharded across processes)."""
    model.eval()
    rows = val_idx[ctx.rank :: ctx.world_size]
    std = torch.tensor(meta.target_std, dtype=torch.float64, device=device)
    mean = torch.tensor(meta.target_mean, dtype=torch.float64, device=device)
    sq = torch.zeros(len(meta.target_names), dtype=torch.float64, device=device)
    count = torch.tensor(float(len(rows)), dtype=torch.float64, device=device)
    for r, xb in iter_batches(images, rows, batch_size):
        x = norm.apply(xb.to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            p = model(x).predictions.double() * std + mean
        t = torch.from_numpy(y[r]).to(device)
        sq += ((p - t) ** 2).sum(dim=0)
    ctx.all_reduce_sum(sq)
    ctx.all_reduce_sum(count)
    return torch.sqrt(sq / count.clamp(min=1.0)).cpu().numpy()


def _checkpoint(path: Path, model, opt, sched, epoch: int, fingerprint: str) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "data_fingerprint": fingerprint,
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))
