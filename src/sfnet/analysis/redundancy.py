"""Redundant features: one feature split in two.

Two features are *redundant* when their activation strengths A_f rank the analysed galaxies
nearly the same way: Spearman rho > ``threshold`` (default 0.9) over the galaxies where either
of them fires (A_f = 0 where a feature does not fire). Redundant pairs are joined into groups
(connected components); the *effective number of distinct features* counts each group once.

Only features active on at least ``min_active`` galaxies are compared (a feature seen a handful
of times has no meaningful rank correlation), and a pair is tested only when the galaxies where
both fire are at least ``min_overlap`` of those where either fires (Jaccard index); pairs that
rarely fire together cannot rank the union alike. Cost: one sparse co-firing count, one rank
pass per compared feature, then O(union) arithmetic per overlapping pair (no sorting per pair);
memory O(N m) for m compared features (at most ``max_features``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sfnet.analysis.activations import SparseActivations, feature_max, feature_stats, rank_features

#: Spearman rho of A_f above which two features count as one feature split in two.
REDUNDANCY_RHO = 0.9


@dataclass
class Redundancy:
    """Groups of redundant features.

    Attributes:
        threshold: the Spearman rho above which two features are redundant.
        features: (m,) the features compared (active on >= min_active galaxies).
        groups: lists of feature indices (each of size >= 2), most frequent feature first.
        pairs: (feature a, feature b, rho, galaxies where either fires) of every redundant pair.
        min_active, max_features: which features were compared (see :func:`redundant_features`).
    """

    threshold: float
    features: np.ndarray
    groups: list[list[int]] = field(default_factory=list)
    pairs: list[tuple[int, int, float, int]] = field(default_factory=list)
    min_active: int = 10
    max_features: int = 32

    @property
    def n_effective(self) -> int:
        """Distinct features among those compared: each group counts once."""
        return len(self.features) - sum(len(g) - 1 for g in self.groups)

    def partners(self, feature: int) -> list[int]:
        """The other members of ``feature``'s group ([] if it is in none)."""
        for g in self.groups:
            if int(feature) in g:
                return [f for f in g if f != int(feature)]
        return []

    def to_dict(self, labels: dict[int, str]) -> dict[str, Any]:
        lab = lambda f: labels.get(int(f), str(int(f)))  # noqa: E731
        return {
            "threshold": float(self.threshold),
            "n_compared": int(len(self.features)),
            "min_active": int(self.min_active),
            "max_features": int(self.max_features),
            "n_effective": int(self.n_effective),
            "groups": [[lab(f) for f in g] for g in self.groups],
            "pairs": [
                {"a": lab(a), "b": lab(b), "rho": round(float(r), 4), "n_union": int(n)}
                for a, b, r, n in self.pairs
            ],
        }


def _strength_columns(acts: SparseActivations, feats: np.ndarray) -> np.ndarray:
    """(N, m) float32 A_f of the given features (0 where inactive), built in O(N k)."""
    fmax = feature_max(acts)
    col = np.full(acts.d, -1, dtype=np.intp)
    col[feats] = np.arange(len(feats))
    out = np.zeros((acts.n, len(feats)), dtype=np.float32)
    idx = acts.indices.astype(np.intp)
    j = col[idx]
    keep = (j >= 0) & (acts.values > 0)
    rows = np.broadcast_to(np.arange(acts.n)[:, None], idx.shape)[keep]
    out[rows, j[keep]] = acts.values[keep] / fmax[idx[keep]]
    return out


def _cofiring(strength: np.ndarray) -> np.ndarray:
    """(m, m) number of galaxies where both features fire (sparse product, O(N k))."""
    from scipy.sparse import csr_matrix

    rows, cols = np.nonzero(strength)
    ind = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=strength.shape)
    return np.asarray((ind.T @ ind).todense())


def _positive_ranks(strength: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """(N, m) float32 rank of each active value among its feature's active values (0 if not).

    Only ``columns`` are ranked (all when None); the others stay 0.
    """
    from scipy.stats import rankdata

    out = np.zeros_like(strength)
    for j in range(strength.shape[1]) if columns is None else columns:
        on = strength[:, j] > 0
        out[on, j] = rankdata(strength[on, j])
    return out


def _union_spearman(ranks: np.ndarray, a: int, b: int) -> tuple[float, int]:
    """Spearman rho of features a, b over the galaxies where either fires, and their number.

    Within the union, a feature's zeros tie at the bottom (average rank (z + 1) / 2) and its
    active values rank above them in their global order (z + rank among its active values),
    so no sorting is needed per pair.
    """
    union = (ranks[:, a] > 0) | (ranks[:, b] > 0)
    n = int(union.sum())
    cols = []
    for j in (a, b):
        r = ranks[union, j].astype(np.float64)
        z = float(n - np.count_nonzero(r))
        cols.append(np.where(r > 0, z + r, (z + 1) / 2) - (n + 1) / 2)
    den = np.sqrt((cols[0] ** 2).sum() * (cols[1] ** 2).sum())
    return (float((cols[0] * cols[1]).sum() / den) if den > 0 else 0.0), n


def _groups(pairs: list[tuple[int, int, float, int]], order: dict[int, int]) -> list[list[int]]:
    parent: dict[int, int] = {}

    def find(a: int) -> int:
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a

    for a, b, _, _ in pairs:
        parent[find(a)] = find(b)
    comps: dict[int, list[int]] = {}
    for f in parent:
        comps.setdefault(find(f), []).append(f)
    groups = [sorted(g, key=order.__getitem__) for g in comps.values() if len(g) > 1]
    return sorted(groups, key=lambda g: order[g[0]])


def redundant_features(
    acts: SparseActivations,
    threshold: float = REDUNDANCY_RHO,
    min_active: int = 10,
    min_overlap: float = 0.2,
    max_features: int = 32,
) -> Redundancy:
    """Find groups of features whose A_f are nearly the same over the analysed galaxies.

    Args:
        acts: the stored activations.
        threshold: Spearman rho (over galaxies where either fires) above which two features
            are one feature split in two.
        min_active: compare only features active on at least this many galaxies.
        min_overlap: test a pair only when (both fire) / (either fires) >= this.
        max_features: compare at most this many features (the most frequent).
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"redundancy threshold must lie in [-1, 1], got {threshold}")
    stats = feature_stats(acts)
    ranked = rank_features(stats.frequency)
    feats = ranked[stats.count[ranked] >= min_active][:max_features]
    result = Redundancy(float(threshold), feats, min_active=min_active, max_features=max_features)
    if len(feats) < 2:
        return result
    strength = _strength_columns(acts, feats)
    both = _cofiring(strength)
    count = np.diag(both)
    either = count[:, None] + count[None, :] - both
    a_idx, b_idx = np.nonzero(np.triu(both >= min_overlap * np.maximum(either, 1), k=1))
    ranks = _positive_ranks(strength, np.union1d(a_idx, b_idx))
    del strength
    for a, b in zip(a_idx, b_idx, strict=True):
        rho, n_union = _union_spearman(ranks, a, b)
        if rho > threshold:
            result.pairs.append((int(feats[a]), int(feats[b]), rho, n_union))
    order = {int(f): i for i, f in enumerate(feats)}
    result.groups = _groups(result.pairs, order)
    return result
