"""Where a feature fires: spatial feature maps and contribution maps of single galaxies.

A feature's *spatial map* on a galaxy is its channel of the last convolutional block before
average pooling (:func:`sfnet.predict.spatial_features`); the map's pixel mean is the pooled
activation a_f that TopK sees. Because the head is linear, the prediction of target t is

    prediction_t = intercept_t + pixel mean of  sum_{f active} w_tf * map_f       (physical units)

with ``intercept_t = mean_t + std_t * b_t`` and ``w_tf = std_t * W_tf`` (the run standardizes
its targets). The summed map is the *contribution map*: which parts of the galaxy push the
prediction up or down, in dex (the pixel mean of the map is prediction − intercept).

Maps are computed only for the galaxies drawn (memory O(galaxies drawn)), never for a data set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def native_resolution(maps: np.ndarray, image_size: int) -> str:
    """``'2x2 at 64 px'``: the map grid of (..., h, w) maps on images of ``image_size`` px."""
    h, w = np.asarray(maps).shape[-2:]
    return f"{h}x{w} at {int(image_size)} px"


#: Stride of resnet18's last block: map cell (i, j) is centred on input pixel (32 i, 32 j)
#: (every strided conv/pool of the trunk is centred on its first input pixel), so the grid is
#: anchored at the top-left corner, not spread evenly: at 64 px the 2x2 cells sit on the
#: corner, the two edges' midpoints and the image centre (32, 32).
FEATURE_STRIDE = 32


def _interp_matrix(size: int, cells: int, stride: int) -> np.ndarray:
    """(size, cells) linear-interpolation weights of pixel p at map coordinate p / stride."""
    u = np.clip(np.arange(size, dtype=np.float64) / stride, 0, cells - 1)
    lo = np.floor(u).astype(int)
    hi = np.minimum(lo + 1, cells - 1)
    frac = u - lo
    m = np.zeros((size, cells))
    m[np.arange(size), lo] += 1 - frac
    m[np.arange(size), hi] += frac
    return m


def upsample(maps: np.ndarray, size: int, stride: int = FEATURE_STRIDE) -> np.ndarray:
    """(..., h, w) maps -> (..., size, size), bilinear, each cell at its receptive-field centre.

    Cell (i, j) is placed on pixel (stride i, stride j) and values are interpolated between
    cell centres (held constant beyond the last one), so a feature that fires on the galaxy's
    centre is drawn on the centre. For display only; statistics use the native maps.
    """
    m = np.asarray(maps, dtype=np.float64)
    my = _interp_matrix(size, m.shape[-2], stride)
    mx = _interp_matrix(size, m.shape[-1], stride)
    return np.einsum("yi,...ij,xj->...yx", my, m, mx).astype(np.float32)


@dataclass
class ContributionMaps:
    """Per-galaxy contribution maps of a linear head on sparse features.

    Attributes:
        intercept: (T,) intercept_t = mean_t + std_t * b_t (physical units).
        maps: (N, T, h, w) sum over active features of std_t * W_tf * map_f (physical units).
        per_feature: (N, k, T) std_t * W_tf * a_f of each kept feature (0 where inactive), so
            intercept + per_feature.sum(1) = prediction.
    """

    intercept: np.ndarray
    maps: np.ndarray
    per_feature: np.ndarray

    def predictions(self) -> np.ndarray:
        """(N, T) intercept + pixel mean of the contribution map (== the model's prediction)."""
        return self.intercept[None, :] + self.maps.mean(axis=(-2, -1))


def contribution_maps(
    feature_maps: np.ndarray,
    indices: np.ndarray,
    values: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    target_mean: Sequence[float],
    target_std: Sequence[float],
) -> ContributionMaps:
    """Contribution maps in physical units from each galaxy's maps of its kept features.

    Args:
        feature_maps: (N, k, h, w) spatial maps of each galaxy's TopK-kept features
            (``spatial_features(run, images, idx, features=indices)``).
        indices: (N, k) kept feature indices; values: (N, k) their pooled activations
            (a kept value of 0 is not an active feature and contributes nothing).
        weight: (T, d) head weight, bias: (T,) head bias (standardized units).
        target_mean, target_std: (T,) the run's target standardization.
    """
    fm = np.asarray(feature_maps, dtype=np.float64)
    idx = np.asarray(indices, dtype=np.intp)
    active = (np.asarray(values) > 0).astype(np.float64)
    std = np.asarray(target_std, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)[:, idx] * std[:, None, None]  # (T, N, k)
    w = np.transpose(w, (1, 2, 0)) * active[:, :, None]  # (N, k, T)
    maps = np.einsum("nkt,nkhw->nthw", w, fm)
    per_feature = w * fm.mean(axis=(-2, -1))[:, :, None]
    intercept = np.asarray(target_mean, np.float64) + std * np.asarray(bias, np.float64)
    return ContributionMaps(intercept=intercept, maps=maps, per_feature=per_feature)


def write_map_figures(
    run: Any,
    images: Any,
    rows_per_feature: dict[str, np.ndarray],
    features: dict[str, int],
    strengths: dict[str, np.ndarray],
    fig_dir: Path,
    exts: Sequence[str] = ("png",),
    objids: dict[str, np.ndarray] | None = None,
) -> dict[str, str]:
    """Per feature: its top-activating galaxies with the feature's spatial map overlaid.

    Args:
        run: the loaded run.
        images: the run's ImageArray.
        rows_per_feature: label -> (n <= 9,) image rows, strongest first.
        features: label -> feature index.
        strengths: label -> (n,) A_f of those galaxies.
        fig_dir: the run's figures folder.
        objids: label -> (n,) objIDs of those galaxies (written under each thumbnail).

    Returns:
        {``maps_<label>``: path relative to the run folder} of the PNG figures.
    """
    from sfnet.outputs.plots import plot_feature_maps
    from sfnet.predict import spatial_features

    out: dict[str, str] = {}
    size = int(images.shape[-1])
    for lab, rows in rows_per_feature.items():
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            continue
        imgs = np.asarray(images[rows])
        maps = spatial_features(run, images, rows, features=[features[lab]])[:, 0]
        res = native_resolution(maps, size)
        for ext in exts:
            plot_feature_maps(
                fig_dir / f"maps_{lab}.{ext}", lab, imgs, upsample(maps, size), strengths[lab],
                res, None if objids is None else objids.get(lab),
            )  # fmt: skip
        out[f"maps_{lab}"] = f"{fig_dir.name}/maps_{lab}.png"
    return out
