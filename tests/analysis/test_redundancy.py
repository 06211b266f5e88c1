"""Redundant features: a planted duplicate is found, an independent pair is not grouped."""

import numpy as np
import pytest

from sfnet.analysis.activations import SparseActivations
from sfnet.analysis.redundancy import redundant_features

N, D = 2000, 16


def _acts(rng, duplicate: bool) -> SparseActivations:
    """Features 1 and 2 fire on random thirds; with ``duplicate``, 2 is a noisy copy of 1."""
    idx = np.zeros((N, 3), np.int16)
    vals = np.zeros((N, 3), np.float32)
    idx[:, 0], vals[:, 0] = 0, rng.gamma(2, 1, N)  # feature 0 fires everywhere
    fires1 = rng.random(N) < 0.35
    a1 = rng.gamma(2, 1, N)
    idx[:, 1], vals[:, 1] = 1, np.where(fires1, a1, 0)
    if duplicate:
        a2 = np.where(fires1, 1.7 * a1 + rng.normal(0, 0.05, N), 0)
    else:
        a2 = np.where(rng.random(N) < 0.35, rng.gamma(2, 1, N), 0)
    idx[:, 2], vals[:, 2] = 2, np.clip(a2, 0, None)
    return SparseActivations(np.arange(N), np.arange(N), idx, vals, d=D)


def test_planted_duplicate_is_one_group():
    red = redundant_features(_acts(np.random.default_rng(0), duplicate=True))
    assert red.groups == [[1, 2]] or red.groups == [[2, 1]]
    assert red.partners(1) == [2] and red.partners(0) == []
    assert len(red.features) == 3 and red.n_effective == 2
    ((a, b, rho, n_union),) = red.pairs
    assert rho > 0.99 and n_union > 0.3 * N
    d = red.to_dict({1: "Z1", 2: "Z2"})
    assert d["n_effective"] == 2 and sorted(d["groups"][0]) == ["Z1", "Z2"]


def test_independent_pair_is_not_grouped():
    red = redundant_features(_acts(np.random.default_rng(1), duplicate=False))
    assert red.groups == [] and red.pairs == []
    assert red.n_effective == len(red.features) == 3


def test_threshold_is_a_parameter():
    acts = _acts(np.random.default_rng(2), duplicate=False)
    # feature 0 fires everywhere, so over the union with 1 it is independent noise: rho ~ 0
    assert redundant_features(acts, threshold=-0.5, min_overlap=0.0).groups == [[0, 1, 2]]


def test_union_spearman_equals_scipy_with_ties():
    from scipy.stats import spearmanr

    from sfnet.analysis.redundancy import _positive_ranks, _union_spearman

    rng = np.random.default_rng(3)
    s = np.where(rng.random((400, 3)) < 0.4, rng.gamma(2, 1, (400, 3)), 0).astype(np.float32)
    s[:, 2] = np.where(s[:, 0] > 0, np.round(s[:, 0], 1), 0)  # tied values
    ranks = _positive_ranks(s)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        union = (s[:, a] > 0) | (s[:, b] > 0)
        rho, n = _union_spearman(ranks, a, b)
        assert n == union.sum()
        assert rho == pytest.approx(spearmanr(s[union, a], s[union, b]).statistic, abs=1e-9)
