"""Predictions and features of a trained run, in batches, in physical units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from sfnet.data.batches import iter_batches
from sfnet.runs import Run


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
    """Run the model on ``images[idx]`` (all rows when ``idx`` is None).

    Args:
        images: ImageArray of (N, 3, H, W) uint8 at the run's crop size.
        idx: rows to predict.
    """
    rows = _rows(images, idx)
    device = _device(run)
    norm = run.meta.normalization
    preds, inds, vals = [], [], []
    for _, xb in iter_batches(images, rows, batch_size):
        out = run.model(norm.apply(xb.to(device)))
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
    out = [
        run.model.features(norm.apply(xb.to(device))).float().cpu().numpy()
        for _, xb in iter_batches(images, rows, batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, run.meta.d), np.float32)


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
