"""Established disentanglement scores of a representation against known factors.

- **DCI** (Eastwood & Williams 2018, "A framework for the quantitative evaluation of
  disentangled representations"): one regressor per factor predicts it from all units; its
  importances form the matrix R (units x factors).
  *Disentanglement*: each unit's importance concentrated on one factor
  (1 - entropy of its row, base = number of factors), averaged with weights = the unit's share
  of the total importance. *Completeness*: each factor captured by one unit (1 - entropy of its
  column, base = number of units), averaged over factors. *Informativeness*: how well the
  regressors predict the factors on held-out examples (mean R^2 here; 1 is perfect).
- **MIG** (Chen et al. 2018, "Isolating sources of disentanglement in VAEs"): per factor, the gap
  between the largest and second-largest mutual information with a unit, divided by the factor's
  entropy; averaged over factors. Units and factors are discretised into equal-width histogram
  bins; MI from :func:`sklearn.metrics.mutual_info_score`.

Both need at least two units and two factors to mean anything (entropies with base 1 are
undefined); with fewer they return NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from sfnet.errors import DataError


@dataclass
class DCIScores:
    """DCI of one representation.

    Attributes:
        disentanglement: in [0, 1]; 1 = every unit is about one factor.
        completeness: in [0, 1]; 1 = every factor is captured by one unit.
        informativeness: mean held-out R^2 of the per-factor regressors (<= 1).
        importance: (p units, m factors) importance matrix R.
    """

    disentanglement: float
    completeness: float
    informativeness: float
    importance: np.ndarray

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d.pop("importance")
        return d


def _check(units: np.ndarray, factors: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(units, dtype=np.float64)
    f = np.asarray(factors, dtype=np.float64)
    if f.ndim == 1:
        f = f[:, None]
    if u.ndim != 2 or f.ndim != 2 or len(u) != len(f) or len(u) < 2:
        raise DataError(
            f"{what}: units (N, p) and factors (N, m) need the same N >= 2 rows; "
            f"got {u.shape} and {f.shape}"
        )
    if not (np.isfinite(u).all() and np.isfinite(f).all()):
        raise DataError(f"{what}: units or factors contain non-finite values")
    return u, f


def _entropy_rows(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy (log base ``base``) of each row of a row-stochastic matrix."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(p > 0, np.log(p), 0.0)
    return -(p * logp).sum(axis=1) / np.log(base)


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) from an importance matrix R (p units, m factors)."""
    r = np.abs(np.asarray(importance, dtype=np.float64))
    p, m = r.shape
    total = r.sum()
    if p < 2 or m < 2 or total <= 0:
        return float("nan"), float("nan")
    row = r.sum(axis=1)
    ok = row > 0
    d_i = 1 - _entropy_rows(r[ok] / row[ok, None], m)
    disentanglement = float((d_i * row[ok] / total).sum())
    col = r.sum(axis=0)
    okc = col > 0
    c_j = 1 - _entropy_rows((r[:, okc] / col[okc]).T, p)
    completeness = float((c_j * col[okc] / total).sum())
    return disentanglement, completeness


def dci(
    units_train: np.ndarray,
    factors_train: np.ndarray,
    units_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    n_estimators: int = 50,
    max_depth: int = 3,
    seed: int = 0,
) -> DCIScores:
    """DCI with one gradient-boosting regressor per factor (scikit-learn).

    Args:
        units_train: (N_train, p) representation units of the fitting examples.
        factors_train: (N_train, m) factors (each standardised internally).
        units_test, factors_test: held-out examples for informativeness.
        n_estimators, max_depth: of each :class:`~sklearn.ensemble.GradientBoostingRegressor`.
        seed: its random state.
    """
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.metrics import r2_score

    utr, ftr = _check(units_train, factors_train, "dci train")
    ute, fte = _check(units_test, factors_test, "dci test")
    if utr.shape[1] != ute.shape[1] or ftr.shape[1] != fte.shape[1]:
        raise DataError(f"dci: train {utr.shape}/{ftr.shape} and test {ute.shape}/{fte.shape}")
    p, m = utr.shape[1], ftr.shape[1]
    importance = np.zeros((p, m))
    r2 = []
    for j in range(m):
        y = ftr[:, j]
        if np.ptp(y) == 0:
            continue
        reg = GradientBoostingRegressor(
            n_estimators=n_estimators, max_depth=max_depth, random_state=seed
        ).fit(utr, y)
        importance[:, j] = reg.feature_importances_
        if np.ptp(fte[:, j]) > 0:
            r2.append(r2_score(fte[:, j], reg.predict(ute)))
    d, c = dci_from_importance(importance)
    return DCIScores(d, c, float(np.mean(r2)) if r2 else float("nan"), importance)


def discretize(values: np.ndarray, bins: int = 10) -> np.ndarray:
    """Each column of (N, q) ``values`` as integer codes of ``bins`` equal-width histogram bins
    (a column with few distinct values keeps them as its codes)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    out = np.zeros(v.shape, dtype=np.int64)
    for j in range(v.shape[1]):
        col = v[:, j]
        uniq = np.unique(col)
        if len(uniq) <= bins:
            out[:, j] = np.searchsorted(uniq, col)
        else:
            edges = np.histogram_bin_edges(col, bins=bins)
            out[:, j] = np.digitize(col, edges[1:-1])
    return out


def mutual_information_matrix(units: np.ndarray, factors: np.ndarray, bins: int = 10) -> np.ndarray:
    """(p, m) mutual information (nats) between discretised units and factors."""
    from sklearn.metrics import mutual_info_score

    u, f = _check(units, factors, "mutual information")
    du, df = discretize(u, bins), discretize(f, bins)
    return np.array(
        [
            [mutual_info_score(df[:, j], du[:, i]) for j in range(f.shape[1])]
            for i in range(u.shape[1])
        ]
    )


def mig(units: np.ndarray, factors: np.ndarray, bins: int = 10) -> float:
    """Mutual information gap (Chen et al. 2018), in [0, 1]; NaN with fewer than 2 units."""
    from sklearn.metrics import mutual_info_score

    u, f = _check(units, factors, "mig")
    if u.shape[1] < 2:
        return float("nan")
    mi = mutual_information_matrix(u, f, bins)
    df = discretize(f, bins)
    gaps = []
    for j in range(f.shape[1]):
        h = mutual_info_score(df[:, j], df[:, j])  # entropy of the discretised factor
        if h <= 0:
            continue
        top = np.sort(mi[:, j])[::-1]
        gaps.append((top[0] - top[1]) / h)
    return float(np.mean(gaps)) if gaps else float("nan")


def scores(
    units: np.ndarray,
    factors: np.ndarray,
    train: Sequence[int] | np.ndarray,
    test: Sequence[int] | np.ndarray,
    *,
    bins: int = 10,
    seed: int = 0,
    n_estimators: int = 50,
) -> dict[str, float]:
    """DCI (fitted on ``train`` rows, informativeness on ``test`` rows, ``n_estimators`` trees
    per factor) and MIG (on ``test`` rows) of ``units`` (N, p) against ``factors`` (N, m)."""
    u, f = _check(units, factors, "disentanglement scores")
    train, test = np.asarray(train), np.asarray(test)
    out = dci(u[train], f[train], u[test], f[test], n_estimators=n_estimators, seed=seed).as_dict()
    out["mig"] = mig(u[test], f[test], bins)
    return out
