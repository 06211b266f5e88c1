"""PCA baseline (the paper's "Comparison to PCA"): dense CNN features -> top-k PCs -> linear fit.

PCA is fitted on the training split of the dense network's 512 pooled features (post-ReLU),
a linear regression of the targets on the top-k principal components is fitted on the same
training galaxies, and the RMSE is measured on the validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression

from sfnet.analysis.metrics import group_rmse, rmse
from sfnet.errors import DataError


@dataclass
class PCAResult:
    """Validation RMSE of linear regression on the top-k principal components.

    Attributes:
        ks: the numbers of components, in the order of ``rmse`` rows.
        rmse: (len(ks), T) validation RMSE per target, in the targets' physical units.
        group_rmse: (len(ks),) RMSE over all T targets together (quadratic mean of ``rmse``).
        variance_ratio: (n,) fraction of the training-feature variance explained by each of
            the top n = min(8, ...) components.
    """

    ks: list[int]
    rmse: np.ndarray
    group_rmse: np.ndarray
    variance_ratio: np.ndarray

    @property
    def cumulative_variance(self) -> np.ndarray:
        """(n,) cumulative explained-variance fraction of the top components."""
        return np.cumsum(self.variance_ratio)


def _check_xy(feats: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(feats, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if feats.ndim != 2 or len(feats) != len(y):
        raise DataError(
            f"{name}: features must be (N, D) with one row per target row; "
            f"got features {feats.shape}, targets {y.shape}"
        )
    if not (np.isfinite(feats).all() and np.isfinite(y).all()):
        raise DataError(f"{name}: features or targets contain non-finite values")
    return feats, y


def pca_regression(
    train_feats: np.ndarray,
    y_train: np.ndarray,
    val_feats: np.ndarray,
    y_val: np.ndarray,
    ks: Sequence[int],
    n_variance: int = 8,
) -> PCAResult:
    """Fit PCA on training features, regress targets on the top-k PCs, score on validation.

    Args:
        train_feats: (N_train, D) dense features (e.g. D = 512 pooled resnet18 features).
        y_train: (N_train, T) or (N_train,) targets in physical units.
        val_feats: (N_val, D) features of the validation galaxies.
        y_val: (N_val, T) or (N_val,) targets.
        ks: numbers of leading components to use (each 1 <= k <= min(N_train, D)).
        n_variance: how many leading components' explained-variance ratios to report.

    Returns:
        :class:`PCAResult` with per-k, per-target validation RMSE.
    """
    xtr, ytr = _check_xy(train_feats, y_train, "pca train split")
    xva, yva = _check_xy(val_feats, y_val, "pca validation split")
    if xtr.shape[1] != xva.shape[1] or ytr.shape[1] != yva.shape[1]:
        raise DataError(
            f"pca: train and validation shapes disagree ({xtr.shape}, {ytr.shape} vs "
            f"{xva.shape}, {yva.shape})"
        )
    ks = [int(k) for k in ks]
    max_comp = min(xtr.shape)
    if not ks or min(ks) < 1 or max(ks) > max_comp:
        raise DataError(f"pca: each k must be in 1..{max_comp} (train shape {xtr.shape}), got {ks}")
    n_fit = min(max_comp, max(max(ks), n_variance))
    pca = PCA(n_components=n_fit, svd_solver="full").fit(xtr)
    ztr, zva = pca.transform(xtr), pca.transform(xva)
    out = np.empty((len(ks), ytr.shape[1]))
    for i, k in enumerate(ks):
        reg = LinearRegression().fit(ztr[:, :k], ytr)
        out[i] = rmse(reg.predict(zva[:, :k]), yva)
    return PCAResult(
        ks=ks,
        rmse=out,
        group_rmse=group_rmse(out),
        variance_ratio=np.asarray(pca.explained_variance_ratio_[:n_variance], dtype=np.float64),
    )
