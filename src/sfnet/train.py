"""``fit()``: the paper's recipe with checkpoints, exact resume and DistributedDataParallel.

RMSE loss on standardized targets (mean/std of the training split), Ranger (RAdam + Lookahead),
flat + cosine learning rate (or one-cycle), random flips, seeded 80/20 split. One run = one
folder (see :mod:`sfnet.runs`). Under ``torchrun`` each process trains on its shard of every
epoch (torch's DistributedSampler); rank 0 logs and writes. ``batch_size`` is the global batch.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
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
    Normalization,
    augment,
    channel_stats,
    device_batches,
    draw_flips,
    epoch_order,
    eval_batch_size,
    split_indices,
)
from sfnet.data.dataset import GalaxyData, load_dataset
from sfnet.distributed import DistContext, init_distributed
from sfnet.errors import RunFolderError, UserError
from sfnet.io import append_jsonl, atomic_write, atomic_write_bytes
from sfnet.lock import folder_lock
from sfnet.model import SparseFeatureNet, backbone_dim, encoder_record, pretrained_normalization
from sfnet.optim import average_start, make_scheduler, ranger
from sfnet.precision import Precision, choose_precision
from sfnet.progress import progress_bar
from sfnet.runs import (
    CHECKPOINT,
    CONFIG,
    META,
    METRICS,
    WEIGHTS,
    RunMeta,
    StagedRun,
    default_device,
    final_val_rmse,
    is_finished,
    load_checkpoint,
    read_metrics,
    remove_leftovers,
    save_weights,
    stage_run_dir,
    staging_path,
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


def _prepare_folder(
    config: RunConfig, out: Path, overwrite: bool, resume: bool
) -> tuple[RunConfig, StagedRun | None]:
    """Check the run folder; returns the config to train with and, for a new run, the staging
    folder it is trained in until its first checkpoint (:func:`sfnet.runs.stage_run_dir`).

    On resume the requested config must equal the stored one, except the data path: a dataset
    that moved may be given anew (its fingerprint is checked against ``model.json``).
    """
    stored = out / CONFIG
    if resume and stored.is_file():
        saved = RunConfig.load(stored)
        if _without_data_path(saved) != _without_data_path(config):
            raise RunFolderError(
                f"{out}: the stored config.toml differs from the requested one; resume with the "
                "stored config (sfnet train --resume RUN) or use --overwrite to start again"
            )
        if saved.data.path != config.data.path:
            log.info("data moved: %s -> %s", saved.data.path, config.data.path)
        remove_leftovers(out)  # e.g. the old run left in .NAME.staging by a kill mid-swap
        return config, None
    staged = stage_run_dir(out, overwrite, config.data.path)
    config.save(staged.path / CONFIG)
    return config, staged


def _without_data_path(config: RunConfig) -> dict[str, Any]:
    d = config.to_dict()
    d["data"].pop("path", None)
    return d


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
            as it is; a folder without a checkpoint starts from scratch). A new run is trained
            in ``.NAME.staging`` beside ``out`` and swapped in once its first checkpoint exists,
            so a failed start changes nothing; ``overwrite`` only replaces an sfnet run folder
            (:func:`sfnet.runs.check_replaceable`). The folder is locked
            (:func:`sfnet.lock.folder_lock`) for the whole training.
        progress: show a tqdm progress bar per epoch (rank 0 only).
        data: already-loaded galaxies (else loaded from ``config.data``).
        on_epoch: called with each epoch's metrics record (rank 0 only).
    """
    config.validate()
    config = dataclasses.replace(config, data=config.data.resolved())  # absolute data path
    out = Path(out)
    tcfg = config.train
    device = default_device(tcfg.device)
    check_cuda_graphs(tcfg.cuda_graphs, device)  # before any folder is touched
    ctx = init_distributed(device.type)
    staged = None
    try:
        with contextlib.ExitStack() as held:
            if ctx.enabled and device.type == "cuda":
                device = torch.device("cuda", ctx.local_rank)
                torch.cuda.set_device(device)
            if ctx.is_main:
                held.enter_context(folder_lock(out, "sfnet train"))
                config, staged = _prepare_folder(config, out, overwrite, resume)
                if resume and is_finished(out):
                    return FitResult(out, final_val_rmse(out), read_metrics(out / METRICS))
            ctx.barrier()  # every rank trains with the same (resolved) config as rank 0
            work = staged.path if staged else out
            if not ctx.is_main and staging_path(out).is_dir():
                work = staging_path(out)
            return _fit(config, work, device, ctx, data, progress, on_epoch, staged)
    except BaseException:
        if staged is not None:
            staged.discard()  # a failed start loses nothing: the old run (if any) is untouched
        raise
    finally:
        ctx.close()


def check_cuda_graphs(wanted: bool, device: torch.device) -> None:
    """Refuse ``train.cuda_graphs`` off CUDA (one line, before training).

    Raises:
        ConfigError: ``wanted`` on a device other than CUDA.
    """
    if wanted and device.type != "cuda":
        raise ConfigError(
            f"train.cuda_graphs needs a CUDA device; this run is on {device.type} "
            "(drop --cuda-graphs, or train on a GPU)"
        )


def graphed_step(net: nn.Module, wanted: bool) -> nn.Module:
    """The module the training step calls: ``net`` itself, or with ``wanted`` (CUDA only,
    :func:`check_cuda_graphs`) ``torch.compile(net, mode="reduce-overhead")``: forward and
    backward replayed as CUDA graphs. Parameters are shared, so checkpoints, the optimizer and
    the evaluation model are unchanged; the optimizer step itself stays eager."""
    if not wanted:
        return net
    return torch.compile(net, mode="reduce-overhead")


class TrainingDiverged(UserError):
    """The loss (or validation RMSE) became NaN or infinite; the message names epoch and step."""


@dataclass
class Trainer:
    """What the epoch loop works with: the data, its split and standardization, the network
    and its optimizer (built by :func:`_build`)."""

    config: RunConfig
    data: GalaxyData
    meta: RunMeta
    train_idx: np.ndarray
    val_idx: np.ndarray
    y: np.ndarray  # (N, T) targets, physical units
    y_std: torch.Tensor  # (N, T) standardized targets on the device
    norm: Normalization
    model: SparseFeatureNet
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    opt: Any
    sched: Any
    ctx: DistContext
    device: torch.device
    precision: Precision
    local_batch: int
    shard_used: int
    steps_per_epoch: int
    bn_rows: np.ndarray  # training rows batch-norm statistics are recomputed on (may be empty)
    ema: WeightAverage | None = None  # eval_weights = "ema": the moving average of the weights
    step_net: nn.Module | None = None  # what the training step calls (None: net; see graphed_step)


class WeightAverage:
    """A moving average of a model's parameters over the annealing phase, updated after every
    optimizer step (``eval_weights = "ema"``), SWA-style: the first ``start_step`` steps (the
    peak-rate phase and ``ema_start`` of the rest, see :func:`sfnet.optim.average_start`) are
    not averaged, and until then the average holds no weights (``updates == 0``: the fast
    weights are used). From there the per-step decay is ``1 - 1 / horizon_steps``, capped at ``n / (n + 1)`` after ``n`` updates,
    so the first ``horizon_steps`` averaged steps form a plain mean (no bias towards the weights
    where averaging began). Buffers (batch-norm statistics) are not averaged: they are
    recomputed for the averaged weights (``bn_recompute``)."""

    def __init__(self, model: nn.Module, horizon_steps: float, start_step: int = 0) -> None:
        self.decay = 1.0 - 1.0 / max(1.0, horizon_steps)
        self.start_step = start_step
        self.params = [p.detach().clone() for p in model.parameters()]
        self.steps = 0  # optimizer steps seen
        self.updates = 0  # of which averaged

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        if self.steps <= self.start_step:
            return
        self.updates += 1
        weight = 1.0 - min(self.decay, (self.updates - 1) / self.updates)  # 1 at the first
        torch._foreach_lerp_(self.params, [p.detach() for p in model.parameters()], weight)

    def averaged(self) -> list[torch.Tensor] | None:
        """The averaged parameters, or None before averaging has begun."""
        return self.params if self.updates else None

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.params, "updates": self.updates, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for mine, saved in zip(self.params, state["params"], strict=True):
            mine.copy_(saved)
        self.updates = int(state["updates"])
        if "steps" not in state:  # written when the average started at step 1: it still does
            self.start_step = 0
        self.steps = int(state.get("steps", self.updates))


def _fit(
    config: RunConfig,
    out: Path,
    device: torch.device,
    ctx: DistContext,
    data: GalaxyData | None,
    progress: bool,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    staged: StagedRun | None = None,
) -> FitResult:
    # data: load, split (seeded), standardize targets and images on the training split
    if data is None:
        data = load_dataset(config.data)
    if ctx.is_main:
        _check_same_data(out, config, data.fingerprint)
    meta, norm, (train_idx, val_idx) = _describe_run(config, data, ctx)
    # model, optimizer and schedule (seeded init; DDP wrapper under torchrun)
    tr = _build(config, data, meta, norm, train_idx, val_idx, device, ctx)
    # restore: continue from the last checkpoint; metrics.jsonl is rebuilt from it
    start_epoch, history = _restore(out, tr)
    for epoch in range(start_epoch, config.train.epochs):
        t0 = time.perf_counter()
        # one epoch over this rank's shard, then validation on the held-out split
        train_loss, dead = _train_epoch(tr, epoch, progress)
        val_rmse = _validate(tr, eval_model(tr))
        _check_finite_rmse(val_rmse, epoch)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_rmse": dict(zip(data.target_names, val_rmse.tolist(), strict=True)),
            "dead_features": dead,
            "lr": float(tr.sched.get_last_lr()[0]),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        # checkpoint: the training state and the metrics history are committed together
        if ctx.is_main:
            history.append(record)
            _commit_epoch(out, tr, history)
            if staged is not None:  # first checkpoint written: swap the new run into place
                out, staged = staged.commit(), None
            if on_epoch is not None:
                on_epoch(record)
        ctx.barrier()
    # finish: final weights; the checkpoint is no longer needed
    if ctx.is_main:
        save_weights(eval_model(tr), out / WEIGHTS)
        tr.meta.save(out / META)
        (out / CHECKPOINT).unlink(missing_ok=True)
    ctx.barrier()
    last = history[-1]["val_rmse"] if history else {}
    return FitResult(out, dict(last), history)


def _check_same_data(out: Path, config: RunConfig, fingerprint: str) -> None:
    """On resume, the data (perhaps at a new path) must be what the run started with; the
    stored config then records the path it was found at."""
    if (out / META).is_file():
        started = RunMeta.load(out / META).data_fingerprint
        if started != fingerprint:
            raise RunFolderError(
                f"{out}: {config.data.path} is not the data this run started with (fingerprint "
                f"{started} -> {fingerprint}); give the original data with --data, or start a "
                "new run"
            )
    if RunConfig.load(out / CONFIG).data.path != config.data.path:
        config.save(out / CONFIG)


def _describe_run(
    config: RunConfig, data: GalaxyData, ctx: DistContext
) -> tuple[RunMeta, Normalization, tuple[np.ndarray, np.ndarray]]:
    """The split, target standardization and image normalization, recorded as ``model.json``."""
    dcfg, mcfg = config.data, config.model
    if ctx.is_main:
        for cut in data.cuts:
            log.info("cut: %s", cut.describe())
    train_idx, val_idx = split_indices(len(data), dcfg.val_fraction, dcfg.split_seed)
    if len(train_idx) < 2 or len(val_idx) < 1:
        raise ConfigError(
            f"{dcfg.path}: {len(data)} galaxies give {len(train_idx)} for training and "
            f"{len(val_idx)} for validation (data.val_fraction {dcfg.val_fraction}); training "
            "needs at least 2 and validation 1"
        )
    y = np.asarray(data.y, dtype=np.float64)
    t_mean = y[train_idx].mean(axis=0)
    t_std = np.maximum(y[train_idx].std(axis=0), MIN_TARGET_STD)
    if mcfg.pretrained is not None:
        norm = Normalization(*pretrained_normalization(mcfg.backbone, mcfg.pretrained))
    else:
        norm = channel_stats(data.images, train_idx)
        log.info(
            "random initialisation (no pretrained weights); per-channel image statistics from the training split"
        )
    meta = RunMeta(
        k=mcfg.k,
        d=backbone_dim(mcfg.backbone, mcfg.pretrained),
        backbone=mcfg.backbone,
        encoder=encoder_record(mcfg.backbone, mcfg.pretrained),
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
        crop=int(data.images.shape[-1]),
        resize=dcfg.resize,
    )
    baseline = np.sqrt(np.mean((y[val_idx] - t_mean) ** 2, axis=0))
    meta.extra["world_size"] = ctx.world_size
    meta.extra["val_rmse_predict_mean"] = dict(
        zip(data.target_names, baseline.tolist(), strict=True)
    )
    return meta, norm, (train_idx, val_idx)


def _build(
    config: RunConfig,
    data: GalaxyData,
    meta: RunMeta,
    norm: Normalization,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    device: torch.device,
    ctx: DistContext,
) -> Trainer:
    """The seeded network, its optimizer and schedule, and the per-rank batch arithmetic."""
    tcfg, mcfg = config.train, config.model
    if tcfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(tcfg.seed)
    model = SparseFeatureNet(mcfg.k, len(data.target_names), mcfg.backbone, mcfg.pretrained)
    local_batch = tcfg.batch_size // ctx.world_size
    if local_batch < 1:
        raise ConfigError(
            f"train.batch_size ({tcfg.batch_size}) is smaller than the number of processes ({ctx.world_size})"
        )
    precision = choose_precision(device, tcfg.amp, tcfg.channels_last, batch_size=local_batch)
    meta.precision = precision.to_dict()
    if ctx.is_main:
        log.info("precision: %s (%s)", precision.name, precision.reason)
    model = precision.model(model.to(device))
    net: nn.Module = model
    if ctx.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    shard = math.ceil(len(train_idx) / ctx.world_size)  # DistributedSampler pads to equal shards
    # A last batch of one galaxy is dropped: batch norm cannot train on a single sample.
    shard_used = shard - 1 if shard % local_batch == 1 and shard > 1 else shard
    steps_per_epoch = math.ceil(shard_used / local_batch)
    opt = ranger(model.parameters(), tcfg)
    remedies = tcfg.remedies()
    warmup = int(round(remedies["warmup_epochs"] * steps_per_epoch))
    total_steps = steps_per_epoch * tcfg.epochs
    sched = make_scheduler(opt, tcfg, total_steps, warmup_steps=warmup)
    bn_rows = bn_sample(train_idx, remedies["bn_recompute"], tcfg.seed)
    ema = None
    if remedies["eval_weights"] == "ema":
        ema = WeightAverage(
            model, tcfg.ema_epochs * steps_per_epoch, average_start(tcfg, total_steps, warmup)
        )
    y = np.asarray(data.y, dtype=np.float64)
    y_std = (y - np.asarray(meta.target_mean)) / np.asarray(meta.target_std)
    y_dev = torch.from_numpy(y_std.astype(np.float32)).to(device)
    return Trainer(
        config, data, meta, train_idx, val_idx, y, y_dev, norm, model, net, opt, sched, ctx,
        device, precision, local_batch, shard_used, steps_per_epoch, bn_rows, ema,
        graphed_step(net, tcfg.cuda_graphs),
    )  # fmt: skip


def _restore(out: Path, tr: Trainer) -> tuple[int, list[dict[str, Any]]]:
    """Load ``checkpoint.pt`` when there is one; returns (epochs done, metrics history).

    ``metrics.jsonl`` and ``model.json`` are rewritten (atomically) to match the checkpoint, so
    a kill between a checkpoint and its metrics line loses nothing.
    """
    start_epoch, history = 0, None
    ckpt_path = out / CHECKPOINT
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, tr.device)  # one line naming a bad file
        if ckpt["data_fingerprint"] != tr.data.fingerprint:
            raise RunFolderError(
                f"{out}: the data changed since this run started (fingerprint "
                f"{ckpt['data_fingerprint']} -> {tr.data.fingerprint}); start a new run"
            )
        tr.model.load_state_dict(ckpt["model"])
        tr.opt.load_state_dict(ckpt["optimizer"])
        tr.sched.load_state_dict(ckpt["scheduler"])
        if tr.ema is not None:
            if "ema" not in ckpt:
                raise RunFolderError(
                    f"{ckpt_path}: this checkpoint holds no weight average, but "
                    "train.eval_weights is ema; resume with the settings the run started with"
                )
            tr.ema.load_state_dict(ckpt["ema"])
        start_epoch = int(ckpt["epoch"])
        history = ckpt.get("history")  # absent in checkpoints of sfnet <= 0.x
        log.info("resuming %s from the end of epoch %d", out, start_epoch)
    if not tr.ctx.is_main:
        return start_epoch, []
    if history is None:
        history = read_metrics(out / METRICS)[:start_epoch]
    _write_metrics(out, history)
    tr.meta.epochs_completed = start_epoch
    tr.meta.save(out / META)
    return start_epoch, list(history)


def _train_epoch(tr: Trainer, epoch: int, progress: bool) -> tuple[float, int]:
    """One pass over this rank's shard; returns (mean training loss, dead features), both
    reduced over all processes. Raises :class:`TrainingDiverged` on a non-finite loss."""
    tcfg, ctx, device = tr.config.train, tr.ctx, tr.device
    tr.net.train()
    order = tr.train_idx[
        epoch_order(len(tr.train_idx), epoch, tcfg.seed, ctx.world_size, ctx.rank)
    ][: tr.shard_used]
    gen = torch.Generator().manual_seed(tcfg.seed * 1_000_003 + epoch * 101 + ctx.rank)
    fired = torch.zeros(tr.model.d, dtype=torch.int32, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    # first step (1-based) with a non-finite loss; checked once per epoch (no per-step sync)
    no_step = torch.tensor(tr.steps_per_epoch + 1, dtype=torch.int64, device=device)
    bad_step = no_step.clone()
    batches = device_batches(
        tr.data.images, order, tr.local_batch, device, prefetch=tcfg.num_workers
    )
    show = progress and ctx.is_main
    bar = progress_bar(show, tr.steps_per_epoch, f"epoch {epoch + 1}/{tcfg.epochs}", leave=False)
    net = tr.net if tr.step_net is None else tr.step_net
    for step, (rows, xb) in enumerate(batches, start=1):
        flips = draw_flips(len(rows), gen) if tcfg.flips else None
        x = augment(xb, tr.norm, flips, tr.precision.channels_last)
        if net is not tr.net:  # CUDA graphs: each step is a new iteration of the graphs
            torch.compiler.cudagraph_mark_step_begin()
        with tr.precision.autocast():
            outp = net(x)
        loss = rmse_loss(outp.predictions, tr.y_std[torch.from_numpy(rows).to(device)])
        tr.opt.zero_grad(set_to_none=True)
        loss.backward()
        tr.opt.step()
        tr.sched.step()
        if tr.ema is not None:
            tr.ema.update(tr.model)
        fired |= (outp.sparse.detach() > 0).any(dim=0).to(torch.int32)
        loss_sum += loss.detach().double() * len(rows)
        bad_step = torch.where(torch.isfinite(loss.detach()), bad_step, bad_step.clamp(max=step))
        bar.update(1)
        if show:  # loss.item() waits for the device: only when the bar is drawn
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    n_seen = torch.tensor(float(len(order)), dtype=torch.float64, device=device)
    for t in (loss_sum, n_seen):
        ctx.all_reduce_sum(t)
    ctx.all_reduce_max(fired)
    first_bad = -ctx.all_reduce_max(-bad_step)  # the earliest bad step over all processes
    if int(first_bad.item()) <= tr.steps_per_epoch:
        raise TrainingDiverged(
            f"training diverged: the loss is not finite at epoch {epoch + 1}, step "
            f"{int(first_bad.item())} (train.lr {tcfg.lr} may be too high); "
            + _kept_after_divergence(epoch)
        )
    return float(loss_sum.item() / max(1.0, n_seen.item())), int(tr.model.d - int(fired.sum()))


def _check_finite_rmse(val_rmse: np.ndarray, epoch: int) -> None:
    if not np.isfinite(val_rmse).all():
        raise TrainingDiverged(
            f"training diverged: the validation RMSE is not finite after epoch {epoch + 1}; "
            + _kept_after_divergence(epoch)
        )


def _kept_after_divergence(epoch: int) -> str:
    """What a divergence in (0-based) ``epoch`` leaves: the checkpoint of the epoch before, or,
    in the first epoch, nothing at all (no checkpoint has been written yet)."""
    if epoch == 0:
        return (
            "no epoch had completed, so there is no checkpoint to resume from and nothing was "
            "written (an existing run folder is left as it was)"
        )
    return (
        f"the checkpoint of epoch {epoch} is kept (sfnet train --resume continues from it); "
        "nothing of this epoch was written"
    )


def eval_model(tr: Trainer) -> nn.Module:
    """The network that is validated and saved: the training model itself under the paper's
    recipe; else a copy of it with Lookahead's slow weights (``eval_weights = "slow"``) or the
    moving average of the weights (``"ema"``), and/or its batch-norm statistics recomputed on
    ``tr.bn_rows`` (``bn_recompute``). A copy: the training state (and so an exact resume) is
    untouched. Deterministic."""
    weights = tr.config.train.remedies()["eval_weights"]
    if weights == "fast" and len(tr.bn_rows) == 0:
        return tr.model
    model = copy.deepcopy(tr.model)
    other = None
    if weights == "slow":
        other = [s for group in tr.opt.slow for s in group]
    elif weights == "ema" and tr.ema is not None:
        other = tr.ema.averaged()  # None before the annealing phase: the fast weights
    if other is not None:
        with torch.no_grad():
            for p, s in zip(model.parameters(), other, strict=True):
                p.copy_(s)
    if len(tr.bn_rows):
        recompute_bn(
            model, tr.data.images, tr.bn_rows, tr.local_batch, tr.norm, tr.precision, tr.device
        )
    return model


@torch.no_grad()
def _validate(tr: Trainer, model: nn.Module | None = None) -> np.ndarray:
    """(T,) validation RMSE per target of ``model`` (default: the training model), physical
    units (val rows sharded across processes)."""
    ctx, device, meta = tr.ctx, tr.device, tr.meta
    model = tr.model if model is None else model
    model.eval()
    rows = tr.val_idx[ctx.rank :: ctx.world_size]
    std = torch.tensor(meta.target_std, dtype=torch.float64, device=device)
    mean = torch.tensor(meta.target_mean, dtype=torch.float64, device=device)
    sq = torch.zeros(len(meta.target_names), dtype=torch.float64, device=device)
    count = torch.tensor(float(len(rows)), dtype=torch.float64, device=device)
    for r, xb in device_batches(tr.data.images, rows, eval_batch_size(tr.local_batch), device):
        x = augment(xb, tr.norm, None, tr.precision.channels_last)
        with tr.precision.autocast():
            p = model(x).predictions.double() * std + mean
        t = torch.from_numpy(tr.y[r]).to(device)
        sq += ((p - t) ** 2).sum(dim=0)
    ctx.all_reduce_sum(sq)
    ctx.all_reduce_sum(count)
    return torch.sqrt(sq / count.clamp(min=1.0)).cpu().numpy()


def bn_sample(train_idx: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """The training rows that batch-norm statistics are recomputed on: all of them when there
    are at most ``cap``, else ``cap`` rows drawn without replacement by a generator seeded with
    ``seed`` (the same rows every epoch and on resume), in increasing order."""
    if len(train_idx) <= cap:
        return np.asarray(train_idx)
    rng = np.random.default_rng([int(seed), 0x5F_B7])
    return np.sort(rng.choice(np.asarray(train_idx), size=cap, replace=False))


@torch.no_grad()
def recompute_bn(
    model: nn.Module,
    images,
    rows: np.ndarray,
    batch_size: int,
    norm: Normalization,
    precision: Precision,
    device: torch.device,
) -> None:
    """Replace every batch-norm layer's running mean and variance by their average over
    ``images[rows]`` (unflipped, in order), as :func:`torch.optim.swa_utils.update_bn` does:
    running statistics reset, momentum None (an equal-weight average of the batch
    statistics), one forward pass in training mode, momenta restored. Deterministic; the
    weights are untouched. ``rows`` with one galaxy left over in the last batch drop it (batch
    norm cannot compute a variance from one sample)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or len(rows) < 2:
        return
    momenta = {}
    for m in bns:
        m.reset_running_stats()
        momenta[m] = m.momentum
        m.momentum = None
    was_training = model.training
    model.train()
    if len(rows) % batch_size == 1:
        rows = rows[:-1]
    try:
        for _, xb in device_batches(images, rows, batch_size, device, prefetch=0):
            x = augment(xb, norm, None, precision.channels_last)
            with precision.autocast():
                model(x)
    finally:
        for m in bns:
            m.momentum = momenta[m]
        model.train(was_training)


def _commit_epoch(out: Path, tr: Trainer, history: list[dict[str, Any]]) -> None:
    """Write the epoch-end checkpoint (holding the metrics history), then its metrics line.

    The checkpoint is the commit point: a kill before it replays the epoch, a kill after it
    (before the metrics line) is repaired on resume from the history the checkpoint holds.
    """
    epoch = history[-1]["epoch"]
    state = {
        "epoch": epoch,
        "model": tr.model.state_dict(),
        "optimizer": tr.opt.state_dict(),
        "scheduler": tr.sched.state_dict(),
        **({"ema": tr.ema.state_dict()} if tr.ema is not None else {}),
        "data_fingerprint": tr.data.fingerprint,
        "history": history,
    }
    atomic_write(out / CHECKPOINT, lambda tmp: torch.save(state, tmp))
    append_jsonl(out / METRICS, history[-1])
    tr.meta.epochs_completed = epoch
    tr.meta.save(out / META)


def _write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in history)
    atomic_write_bytes(out / METRICS, text.encode())
