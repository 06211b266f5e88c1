import numpy as np
import pytest
from scipy.stats import special_ortho_group

from sfnet.analysis.disentangle import dci, dci_from_importance, discretize, mig, scores
from sfnet.errors import DataError


@pytest.fixture(scope="module")
def factors():
    return np.random.default_rng(0).uniform(-1, 1, size=(600, 4))


def _noisy(x, seed=1):
    return x + 0.02 * np.random.default_rng(seed).normal(size=x.shape)


def test_perfectly_disentangled_code_scores_near_one(factors):
    units = _noisy(factors[:, [2, 0, 3, 1]])  # one unit per factor, permuted
    s = scores(units, factors, np.arange(400), np.arange(400, 600))
    assert s["disentanglement"] > 0.9 and s["completeness"] > 0.9
    assert s["informativeness"] > 0.9
    assert s["mig"] > 0.6


def test_rotated_codes_score_low(factors):
    tr, te = np.arange(400), np.arange(400, 600)
    good = scores(_noisy(factors), factors, tr, te)
    # every factor mixed into every unit in equal parts (a Hadamard rotation): no unit is about
    # one factor, but the information is all there
    hadamard = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2
    s = scores(_noisy(factors @ hadamard), factors, tr, te)
    assert s["disentanglement"] < 0.2 and s["completeness"] < 0.2 and s["mig"] < 0.1
    assert s["informativeness"] > 0.8
    # random rotations: lower than the aligned code on every score but informativeness
    for seed in (1, 2, 3):
        rot = special_ortho_group.rvs(4, random_state=seed)
        r = scores(_noisy(factors @ rot), factors, tr, te)
        assert r["disentanglement"] < good["disentanglement"] - 0.2
        assert r["completeness"] < good["completeness"] - 0.2
        assert r["mig"] < good["mig"] - 0.3


def test_dci_from_importance_extremes():
    d, c = dci_from_importance(np.eye(3))
    assert d == pytest.approx(1) and c == pytest.approx(1)
    d, c = dci_from_importance(np.ones((3, 3)))
    assert d == pytest.approx(0) and c == pytest.approx(0)
    # one unit carries every factor: complete per factor? no (all in one unit) but D low
    d, c = dci_from_importance(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    assert d == pytest.approx(0) and c == pytest.approx(1)
    assert np.isnan(dci_from_importance(np.ones((1, 3)))[0])


def test_discretize_and_bad_input(factors):
    codes = discretize(factors[:, :1], bins=10)
    assert codes.min() == 0 and codes.max() == 9
    binary = discretize(np.array([0.0, 1.0, 1.0, 0.0]), bins=10)
    assert set(binary[:, 0]) == {0, 1}
    assert np.isnan(mig(factors[:, :1], factors))  # one unit: no gap
    with pytest.raises(DataError, match="same N"):
        dci(factors[:10], factors[:9], factors[:10], factors[:10])
    with pytest.raises(DataError, match="non-finite"):
        mig(np.full((5, 2), np.nan), factors[:5])
