"""Ground-truth interpretability on synthetic data: is each feature about one latent factor?

For every representation unit (an SFNet feature's A_f, a PCA component of a dense CNN, or one
of its raw neurons) we measure the Spearman rho with every ``true_*`` column of the synthetic
catalog and report

- the best |rho| (how cleanly it tracks *some* factor), and
- the margin of the best |rho| over the second best (how *monosemantic* it is).

One number summarises a model: the mean best |rho| over its top-k units (the k most frequent
SFNet features, the top-k principal components, the k most variable neurons).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfnet.analysis.activations import interpretable_columns, spearman_with_catalog
from sfnet.config import INFERENCE_BATCH
from sfnet.errors import DataError

#: Prefix of the ground-truth latent factor columns of the synthetic survey.
TRUE_PREFIX = "true_"


@dataclass
class FactorMatch:
    """The best-matching ground-truth factors of one representation unit.

    Attributes:
        unit: the unit's name (``SL17``, ``PC1``, ``neuron 301``).
        best_factor: the ``true_*`` column with the largest |rho|.
        best_rho: its signed Spearman rho.
        second_factor: the runner-up column ("" with a single factor).
        second_rho: its signed Spearman rho (0 with a single factor).
        margin: |best_rho| - |second_rho| (monosemanticity).
    """

    unit: str
    best_factor: str
    best_rho: float
    second_factor: str
    second_rho: float
    margin: float

    @property
    def best_abs(self) -> float:
        return abs(self.best_rho)


def true_factor_columns(catalog: pd.DataFrame) -> list[str]:
    """Numeric, non-constant ``true_*`` columns of a catalog (empty on real data)."""
    return [c for c in interpretable_columns(catalog) if c.startswith(TRUE_PREFIX)]


def factor_matches(
    units: np.ndarray, unit_names: Sequence[str], factors: pd.DataFrame
) -> list[FactorMatch]:
    """Best and runner-up ground-truth factor of each unit.

    Args:
        units: (N, p) the units' values on N galaxies.
        unit_names: p names.
        factors: N rows of ``true_*`` columns, aligned with ``units``.
    """
    units = np.asarray(units, dtype=np.float64)
    if units.ndim != 2 or units.shape[1] != len(unit_names):
        raise ValueError(f"factor_matches: units {units.shape} vs {len(unit_names)} names")
    names = list(map(str, factors.columns))
    if not names:
        raise DataError("no true_* factor columns: ground truth needs a synthetic catalog")
    rho = spearman_with_catalog(units, factors.reset_index(drop=True), names)
    out = []
    for i, unit in enumerate(unit_names):
        row = rho[i]
        order = np.lexsort((np.arange(len(row)), -np.abs(row)))
        best = int(order[0])
        second = int(order[1]) if len(order) > 1 else None
        second_rho = float(row[second]) if second is not None else 0.0
        out.append(
            FactorMatch(
                unit=str(unit),
                best_factor=names[best],
                best_rho=float(row[best]),
                second_factor=names[second] if second is not None else "",
                second_rho=second_rho,
                margin=float(abs(row[best]) - abs(second_rho)),
            )
        )
    return out


def summary(matches: Sequence[FactorMatch]) -> dict[str, float]:
    """Mean best |rho| and mean margin over the given units."""
    if not matches:
        return {"mean_best_abs_rho": float("nan"), "mean_margin": float("nan")}
    return {
        "mean_best_abs_rho": float(np.mean([m.best_abs for m in matches])),
        "mean_margin": float(np.mean([m.margin for m in matches])),
    }


def dense_units(
    train_features: np.ndarray, eval_features: np.ndarray, k: int, seed: int = 0
) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """The top-k PCA components and the k most variable raw neurons of a dense network.

    PCA and the neuron variances are fitted on ``train_features`` (N_train, d) and evaluated on
    ``eval_features`` (N, d).

    Returns:
        (pcs (N, k), ["PC1", ...], neurons (N, k), ["neuron 301", ...]).
    """
    from sklearn.decomposition import PCA

    tr = np.asarray(train_features, dtype=np.float64)
    ev = np.asarray(eval_features, dtype=np.float64)
    if tr.ndim != 2 or ev.ndim != 2 or tr.shape[1] != ev.shape[1]:
        raise ValueError(f"dense_units: feature shapes {tr.shape} and {ev.shape} differ")
    n_comp = min(k, tr.shape[0], tr.shape[1])
    pca = PCA(n_components=n_comp, random_state=seed).fit(tr)
    pcs = pca.transform(ev)
    var = tr.var(axis=0)
    neurons = np.lexsort((np.arange(len(var)), -var))[:k]
    return (
        pcs,
        [f"PC{i + 1}" for i in range(n_comp)],
        ev[:, neurons],
        [f"neuron {int(j)}" for j in neurons],
    )


def model_groundtruth(matches: Sequence[FactorMatch]) -> dict[str, Any]:
    """JSON-ready: per-unit matches and the summary."""
    return {"units": [asdict(m) for m in matches], **summary(matches)}


def sfnet_groundtruth(
    strengths: np.ndarray, labels: Sequence[str], catalog: pd.DataFrame
) -> dict[str, Any] | None:
    """Ground truth of the SFNet's top features (A_f columns aligned with catalog rows).

    Returns None when the catalog has no ``true_*`` columns (real data).
    """
    cols = true_factor_columns(catalog)
    if not cols:
        return None
    return model_groundtruth(factor_matches(strengths, labels, catalog[cols]))


def dense_groundtruth(
    dense_run: Any,
    k: int,
    *,
    max_fit: int = 20000,
    batch_size: int = INFERENCE_BATCH,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Ground truth of a dense run's top-k PCA components and k most variable neurons.

    PCA is fitted on (at most ``max_fit`` randomly chosen) galaxies of the dense run's training
    split; the matches are measured on its validation split. Returns None without ``true_*``
    columns.
    """
    from sfnet.predict import pooled_features

    data = dense_run.data()
    cols = true_factor_columns(data.catalog)
    if not cols:
        return None
    train, val = dense_run.split(len(data.images))
    train = np.asarray(train)
    if len(train) > max_fit:
        train = np.sort(np.random.default_rng(seed).choice(train, max_fit, replace=False))
    f_train = pooled_features(dense_run, data.images, train, batch_size=batch_size)
    f_val = pooled_features(dense_run, data.images, np.asarray(val), batch_size=batch_size)
    pcs, pc_names, neurons, neuron_names = dense_units(f_train, f_val, k, seed=seed)
    factors = data.catalog.iloc[np.asarray(val)][cols]
    return {
        "run": str(dense_run.dir),
        "data_fingerprint": getattr(dense_run.meta, "data_fingerprint", ""),
        "pca": model_groundtruth(factor_matches(pcs, pc_names, factors)),
        "neurons": model_groundtruth(factor_matches(neurons, neuron_names, factors)),
    }


def write_groundtruth(groundtruth: dict[str, Any], run_dir: Path) -> Path:
    """Write ``groundtruth.json`` (what :func:`sfnet_groundtruth` / :func:`dense_groundtruth`
    returned, keyed by model) into the run folder."""
    from sfnet.io import atomic_write_json
    from sfnet.runs import GROUNDTRUTH

    path = Path(run_dir) / GROUNDTRUTH
    atomic_write_json(path, groundtruth)
    return path
