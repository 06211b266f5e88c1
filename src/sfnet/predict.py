"""Predictions and features of a trained run, in batches, in physical units."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from sfnet.config import ConfigError
from sfnet.data.batches import iter_batches
from sfnet.runs import Run

log = logging.getLogger("sfnet.predict")


@dataclass
class Predictions:
    """Model outputs for N galaxies.

    Attributes:
        predictions: (N, T) in physical units (dex; log10 flux in 1e-17 erg/s/cm^2).
        indices: (N, k) int64 feature indices kept by TopK, sorted by value (None if dense).
        values: (N, k) float32 their activations; 0 means the feature is not active.
    """

    predictions: np.ndarray
    indices: np.ndarray | None
    values: np.ndarray | None


def _device(run: Run) -> torch.device:
    return next(run.model.parameters()).device


def _rows(images, idx: np.ndarray | None) -> np.ndarray:
    return (
        np.arange(len(images), dtype=np.int64) if idx is None else np.asarray(idx, dtype=np.int64)
    )


@torch.inference_mode()
def predict(run: Run, images, idx: np.ndarray | None = None, batch_size: int = 256) -> Predictions:
    """Run the model on ``images[idx]`` (all rows when ``idx`` is None), at ``run.precision``.

    Args:
        images: ImageArray of (N, 3, H, W) uint8 at the run's crop size.
        idx: rows to predict.
        batch_size: galaxies per forward pass (>= 1).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"predict: batch size must be an integer >= 1, got {batch_size!r}")
    rows = _rows(images, idx)
    device = _device(run)
    norm = run.meta.normalization
    preds, inds, vals = [], [], []
    for _, xb in iter_batches(images, rows, batch_size):
        with run.precision.autocast():
            out = run.model(run.precision.images(norm.apply(xb.to(device))))
        preds.append(out.predictions.float().cpu().numpy())
        if out.indices is not None:
            inds.append(out.indices.cpu().numpy())
            vals.append(out.values.float().cpu().numpy())
    T = len(run.meta.target_names)
    p = np.concatenate(preds) if preds else np.zeros((0, T), np.float32)
    p = run.meta.to_physical(p).astype(np.float32)
    if run.meta.k is None:
        return Predictions(p, None, None)
    k = run.meta.k
    i = np.concatenate(inds) if inds else np.zeros((0, k), np.int64)
    v = np.concatenate(vals) if vals else np.zeros((0, k), np.float32)
    return Predictions(p, i.astype(np.int64), v.astype(np.float32))


@torch.inference_mode()
def pooled_features(
    run: Run, images, idx: np.ndarray | None = None, batch_size: int = 256
) -> np.ndarray:
    """(N, d) float32 pooled features after the ReLU, before TopK (the dense representation)."""
    rows = _rows(images, idx)
    device = _device(run)
    norm = run.meta.normalization
    out = []
    for _, xb in iter_batches(images, rows, batch_size):
        with run.precision.autocast():
            f = run.model.pooled(run.precision.images(norm.apply(xb.to(device))))
        out.append(f.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, run.meta.d), np.float32)


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


@dataclass
class PredictionInput:
    """Every galaxy of a dataset that has a usable image, with its measurement if any.

    Attributes:
        objid: (N,) IDs of the galaxies predicted, catalog order.
        images: ImageArray (N, 3, crop, crop) uint8.
        measured: (N, T) measured targets in physical units (NaN where not measured).
        passes_cuts: (N,) bool, True where the galaxy passes the training target's cuts.
        fingerprint: of the dataset.
        n_catalog: catalog rows; the others had no usable image.
        unpredicted: IDs of the rows not predicted (no image, or dropped by prepare --skip-bad).
    """

    objid: np.ndarray
    images: object
    measured: np.ndarray
    passes_cuts: np.ndarray
    fingerprint: str
    n_catalog: int
    unpredicted: list


def prediction_input(dcfg) -> PredictionInput:
    """The galaxies of ``dcfg.path`` to predict: all rows with an image, no quality cut.

    The measured targets and the quality flags come from the catalog where it has the target
    columns (else NaN / False). A ``.npz`` file is taken whole (its ``y`` is the measurement).
    """
    from pathlib import Path

    from sfnet.data import catalog as cat
    from sfnet.data import store
    from sfnet.data.dataset import load_dataset
    from sfnet.errors import DataError

    path = Path(dcfg.path)
    if path.is_file() or not path.exists():
        d = load_dataset(dcfg, require_targets=False)
        ok = np.isfinite(d.y).all(axis=1)
        return PredictionInput(d.objid, d.images, d.y, ok, d.fingerprint, len(d), [])
    cat_path = cat.find_catalog(path)
    table = cat.read_catalog(cat_path)
    names = cat.target_names(dcfg.target)
    measured = np.full((len(table), len(names)), np.nan)
    passes = np.zeros(len(table), dtype=bool)
    if all(c in table.columns for c in cat.TARGET_COLUMNS[dcfg.target]):
        try:
            measured, passes, _ = cat.quality_flags(table, dcfg.target, str(cat_path))
        except DataError as e:
            log.warning("no quality flags: %s", e)
    keys = table["objID"].astype(str).to_numpy()
    have = set(store.image_index(path)) - set(store.skipped_objids(path, dcfg.crop, dcfg.resize))
    usable = np.array([k in have for k in keys], dtype=bool)
    objid = table["objID"].to_numpy()[usable]
    fp = store.fingerprint(path)
    images = store.open_images(path, objid, dcfg.crop, dcfg.resize, folder_fingerprint=fp)
    return PredictionInput(
        objid, images, measured[usable], passes[usable], fp, len(table), list(keys[~usable])
    )


def predict_dataset(run: Run, dcfg, batch_size: int = 256) -> pd.DataFrame:
    """Predict every galaxy of ``dcfg.path`` that has an image (see :func:`prediction_input`).

    Returns:
        objID, ``split`` (train/val/other, only on the run's own data), the measured targets
        ``measured_<target>`` (NaN where the catalog has none) and ``passes_cuts``,
        ``pred_<target>`` (physical units), and the active features (``feature_j``,
        ``activation_j``; index -1 where fewer than k are active).
        What was and was not predicted is logged.
    """
    from sfnet.data.catalog import target_names
    from sfnet.errors import UserError

    if batch_size <= 0:
        raise UserError(f"batch size (predict --batch-size) must be positive, got {batch_size}")
    inp = prediction_input(dcfg)
    if inp.images.shape[-1] != run.meta.crop:
        raise UserError(
            f"{dcfg.path}: images are {inp.images.shape[-1]} px, "
            f"the model was trained on {run.meta.crop} px"
        )
    pred = predict(run, inp.images, batch_size=batch_size)
    table = table_of_predictions(inp.objid, run.meta.target_names, pred)
    at = 1
    if inp.fingerprint == run.meta.data_fingerprint:
        table.insert(at, "split", _split_of(run, dcfg, inp.objid))
        at += 1
    for i, name in enumerate(target_names(dcfg.target) if inp.n_catalog else []):
        if i < inp.measured.shape[1]:
            table.insert(at, f"measured_{name}", inp.measured[:, i])
            at += 1
    table.insert(at, "passes_cuts", inp.passes_cuts)
    _log_coverage(inp, dcfg)
    return table


def _split_of(run: Run, dcfg, objid: np.ndarray) -> np.ndarray:
    """ "train" / "val" for the galaxies the run was trained / validated on, else "other"."""
    from sfnet.data.dataset import load_dataset

    d = load_dataset(dcfg)
    tr, va = run.split(len(d))
    where = {str(o): "train" for o in d.objid[tr]} | {str(o): "val" for o in d.objid[va]}
    return np.array([where.get(str(o), "other") for o in objid], dtype=object)


def _log_coverage(inp: PredictionInput, dcfg) -> None:
    n = len(inp.objid)
    log.info("predicted %d of %d galaxies in %s", n, inp.n_catalog, dcfg.path)
    if inp.unpredicted:
        shown = ", ".join(map(str, inp.unpredicted[:20]))
        more = " (first 20 shown)" if len(inp.unpredicted) > 20 else ""
        log.info(
            "not predicted: %d without an image (or dropped by prepare --skip-bad): %s%s",
            len(inp.unpredicted),
            shown,
            more,
        )
    n_fail = int((~inp.passes_cuts).sum())
    if n_fail:
        log.info(
            "%d fail the %s cuts (predicted anyway; passes_cuts is False)", n_fail, dcfg.target
        )


def table_of_predictions(objid: np.ndarray, names: list[str], pred: Predictions) -> pd.DataFrame:
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
