"""Error measures shared by the analyses (numpy; the training loss is ``train.rmse_loss``)."""

from __future__ import annotations

import numpy as np


def rmse(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-column RMSE of (N, T) predictions against (N, T) truths -> (T,)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    return np.sqrt(np.mean((pred - y) ** 2, axis=0))


def group_rmse(per_target_rmse: np.ndarray) -> np.ndarray:
    """RMSE over all targets of a group from per-target RMSEs on the same galaxies.

    Args:
        per_target_rmse: (..., T) per-target RMSE.

    Returns:
        (...,) sqrt of the mean squared error over targets (the RMSE of all residuals pooled).
    """
    r = np.asarray(per_target_rmse, dtype=np.float64)
    return np.sqrt(np.mean(r**2, axis=-1))
