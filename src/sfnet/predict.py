"""Predictions and features of a trained run, in batches, in physical units."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from sfnet.config import INFERENCE_BATCH, ConfigError
from sfnet.data.batches import iter_batches
from sfnet.runs import Run

if TYPE_CHECKING:
    from sfnet.data.galaxies import Galaxies

log = logging.getLogger("sfnet.predict")


@dataclass
class Predictions:
    """Model outputs for N galaxies.

    Attributes:
        predictions: (N, T) in physical units (dex; log10 flux in 1e-17 erg/s/cm^2).
        indices: (N, k) int64 feature indices kept by TopK, sorted by value (None if dense).
        values: (N, k) float32 their activations; 0 means the feature is not active.
        pooled: (N, d) float32 pooled features after the ReLU, before TopK, from the same
            forward pass (only when asked for: ``predict(..., pooled=True)``; else None).
    """

    predictions: np.ndarray
    indices: np.ndarray | None
    values: np.ndarray | None
    pooled: np.ndarray | None = None


def _device(run: Run) -> torch.device:
    return next(run.model.parameters()).device


def _rows(images, idx: np.ndarray | None) -> np.ndarray:
    return (
        np.arange(len(images), dtype=np.int64) if idx is None else np.asarray(idx, dtype=np.int64)
    )


@torch.inference_mode()
def predict(
    run: Run,
    images,
    idx: np.ndarray | None = None,
    batch_size: int = INFERENCE_BATCH,
    pooled: bool = False,
) -> Predictions:
    """Run the model on ``images[idx]`` (all rows when ``idx`` is None), at ``run.precision``.

    One forward pass per batch gives the predictions, the TopK features and, with ``pooled``,
    the pooled features before TopK: a caller that needs both never runs the model twice.

    Args:
        images: ImageArray of (N, 3, H, W) uint8 at the run's crop size.
        idx: rows to predict.
        batch_size: galaxies per forward pass (>= 1).
        pooled: also return the (N, d) pooled features (``Predictions.pooled``).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"predict: batch size must be an integer >= 1, got {batch_size!r}")
    rows = _rows(images, idx)
    device = _device(run)
    norm = run.meta.normalization
    preds, inds, vals, pools = [], [], [], []
    for _, xb in iter_batches(images, rows, batch_size):
        with run.precision.autocast():
            out = run.model(run.precision.images(norm.apply(xb.to(device))))
        preds.append(out.predictions.float().cpu().numpy())
        if out.indices is not None:
            inds.append(out.indices.cpu().numpy())
            vals.append(out.values.float().cpu().numpy())
        if pooled:
            pools.append(out.pooled.float().cpu().numpy())
    T = len(run.meta.target_names)
    p = np.concatenate(preds) if preds else np.zeros((0, T), np.float32)
    p = run.meta.to_physical(p).astype(np.float32)
    f = None
    if pooled:
        f = np.concatenate(pools) if pools else np.zeros((0, run.meta.d), np.float32)
    if run.meta.k is None:
        return Predictions(p, None, None, f)
    k = run.meta.k
    i = np.concatenate(inds) if inds else np.zeros((0, k), np.int64)
    v = np.concatenate(vals) if vals else np.zeros((0, k), np.float32)
    return Predictions(p, i.astype(np.int64), v.astype(np.float32), f)


@torch.inference_mode()
def pooled_features(
    run: Run, images, idx: np.ndarray | None = None, batch_size: int = INFERENCE_BATCH
) -> np.ndarray:
    """(N, d) float32 pooled features after the ReLU, before TopK (the dense representation):
    :func:`predict`'s pass with ``pooled=True`` (the linear head it also runs is negligible)."""
    return predict(run, images, idx, batch_size, pooled=True).pooled


@torch.inference_mode()
def spatial_features(
    run: Run,
    images,
    idx: np.ndarray | None = None,
    features: np.ndarray | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Spatial feature maps of ``images[idx]``: channels of the last conv block, before pooling.

    The pixel mean of map f of a galaxy is its pooled activation a_f (what TopK sees). Only
    the galaxies asked for are computed, and only the requested channels are kept, so memory is
    O(galaxies x features x h x w).

    Args:
        images: ImageArray of (N, 3, H, W) uint8 at the run's crop size.
        idx: rows to compute (all rows when None).
        features: None (all d channels), (F,) the same channels for every galaxy, or (n, F)
            per-galaxy channels (e.g. each galaxy's own TopK indices).

    Returns:
        (n, F, h, w) float32 activations (h = w = ceil(crop / 32) for resnet18).
    """
    rows = _rows(images, idx)
    feats = None if features is None else np.asarray(features, dtype=np.int64)
    if feats is not None and feats.ndim == 2 and len(feats) != len(rows):
        raise ValueError(f"spatial_features: {len(feats)} feature rows for {len(rows)} galaxies")
    device = _device(run)
    norm = run.meta.normalization
    out = []
    for start in range(0, len(rows), batch_size):
        sel = rows[start : start + batch_size]
        xb = torch.from_numpy(np.ascontiguousarray(images[sel]))
        with run.precision.autocast():  # the precision the run's predictions are made at
            maps = run.model.feature_maps(run.precision.images(norm.apply(xb.to(device))))
        maps = maps.float()
        if feats is not None and feats.ndim == 1:
            maps = maps[:, torch.as_tensor(feats, device=maps.device)]
        elif feats is not None:
            f = torch.as_tensor(feats[start : start + batch_size], device=maps.device)
            maps = torch.take_along_dim(maps, f[:, :, None, None], dim=1)
        out.append(maps.cpu().numpy())
    if out:
        return np.concatenate(out)
    return np.zeros((0, run.meta.d if feats is None else feats.shape[-1], 0, 0), np.float32)


# ------------------------------------------------------------------ a dataset's prediction table


def predict_dataset(run: Run, dcfg: Any, batch_size: int = INFERENCE_BATCH) -> pd.DataFrame:
    """``sfnet predict``: every galaxy of ``dcfg.path`` (a DataConfig, or a path; None: the run's
    own data) that has an image, at the run's resize and crop (:meth:`sfnet.runs.Run.galaxies`).

    Returns:
        :func:`predict_table` of those galaxies.
    """
    source = getattr(dcfg, "path", dcfg)
    return predict_table(run, run.galaxies(source or None), batch_size=batch_size)


def predict_table(run: Run, galaxies: Galaxies, batch_size: int = INFERENCE_BATCH) -> pd.DataFrame:
    """The prediction table of ``galaxies`` (:class:`sfnet.data.galaxies.Galaxies`): what
    ``sfnet predict`` writes and :meth:`sfnet.runs.Run.predict` returns.

    Returns:
        objID, ``split`` (train/val/other, only on the run's own data), the measured targets
        ``measured_<target>`` (NaN where none), ``passes_cuts`` and ``status`` ("" / "no
        measurement" / "fails cut <cut>"), ``pred_<target>`` (physical units), and the active
        features (``feature_j``, ``label_j``, ``activation_j``; index -1 and label "" where
        fewer than k are active). What was and was not predicted is logged.
    """
    from sfnet.errors import UserError

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise UserError(f"batch size (predict --batch-size) must be positive, got {batch_size}")
    pred = predict(run, galaxies.images, batch_size=batch_size)
    names = list(run.meta.target_names)
    table = table_of_predictions(galaxies.objid, names, pred, target=run.meta.target)
    at = 1
    if galaxies.fingerprint is not None and galaxies.fingerprint == run.meta.data_fingerprint:
        table.insert(at, "split", _split_of(run, galaxies.objid))
        at += 1
    if galaxies.measured.shape[1] == len(names):
        for i, name in enumerate(names):
            table.insert(at, f"measured_{name}", galaxies.measured[:, i])
            at += 1
    table.insert(at, "passes_cuts", galaxies.passes_cuts)
    table.insert(at + 1, "status", np.asarray(galaxies.status, dtype=str))
    _log_coverage(galaxies, run.meta.target)
    return table


def _split_of(run: Run, objid: np.ndarray) -> np.ndarray:
    """ "train" / "val" for the galaxies the run was trained / validated on, else "other"."""
    d = run.data()
    tr, va = run.split(len(d))
    where = {str(o): "train" for o in d.objid[tr]} | {str(o): "val" for o in d.objid[va]}
    return np.array([where.get(str(o), "other") for o in objid], dtype=object)


def _log_coverage(g: Galaxies, target: str) -> None:
    log.info("predicted %d of %d galaxies in %s", len(g), g.n_catalog, g.source)
    missing = g.no_image + g.dropped
    if missing:
        shown = ", ".join(map(str, missing[:20]))
        more = " (first 20 shown)" if len(missing) > 20 else ""
        log.info(
            "not predicted: %d without an image (or dropped by prepare --skip-bad): %s%s",
            len(missing),
            shown,
            more,
        )
    n_fail = int((~g.passes_cuts).sum())
    if n_fail:
        log.info("%d fail the %s cuts (predicted anyway; passes_cuts is False)", n_fail, target)


def table_of_predictions(
    objid: np.ndarray, names: list[str], pred: Predictions, target: str | None = None
) -> pd.DataFrame:
    """objID, ``pred_<target>`` columns and ``feature_j`` / ``label_j`` (with ``target``: the
    atlas's label, e.g. ``Z440``) / ``activation_j`` (j = 1..k) columns."""
    from sfnet.analysis.activations import feature_label

    table = pd.DataFrame({"objID": objid})
    for i, name in enumerate(names):
        table[f"pred_{name}"] = pred.predictions[:, i]
    if pred.indices is not None:
        active = pred.values > 0
        for j in range(pred.indices.shape[1]):
            table[f"feature_{j + 1}"] = np.where(active[:, j], pred.indices[:, j], -1).astype(
                np.int16
            )
            if target is not None:
                table[f"label_{j + 1}"] = [
                    feature_label(target, int(f)) if a else ""
                    for f, a in zip(pred.indices[:, j], active[:, j], strict=True)
                ]
            table[f"activation_{j + 1}"] = np.where(active[:, j], pred.values[:, j], 0.0).astype(
                np.float32
            )
    return table
