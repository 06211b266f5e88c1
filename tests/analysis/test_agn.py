import numpy as np
import pytest

from sfnet.analysis.agn import agn_comparison, agn_labels, agn_svm
from sfnet.errors import DataError


def test_agn_labels_from_log_fluxes():
    # (log NII, log Ha, log OIII, log Hb): star-forming, above the line, right of asymptote
    f = np.array(
        [
            [0.0, 0.5, 0.0, 0.0],  # x = -0.5, y = 0   -> curve 0.191: SF
            [0.0, 0.5, 1.0, 0.0],  # x = -0.5, y = 1   -> AGN
            [0.3, 0.2, -1.0, 0.0],  # x = 0.1 >= 0.05   -> AGN
        ]
    )
    assert agn_labels(f).tolist() == [False, True, True]


def test_agn_svm_separable_and_noise_features():
    rng = np.random.default_rng(0)
    n, d = 600, 40
    acts = np.zeros((n, d))
    labels = rng.random(n) < 0.3
    # feature 5 fires for AGN, feature 7 for star-forming; both very frequent
    acts[labels, 5] = rng.uniform(0.5, 1.0, labels.sum())
    acts[~labels, 7] = rng.uniform(0.5, 1.0, (~labels).sum())
    # rare noise features
    for j in range(10, 40):
        on = rng.random(n) < 0.02
        acts[on, j] = rng.random(on.sum())
    tr, va = np.arange(400), np.arange(400, n)
    res = agn_comparison(acts[tr], labels[tr], acts[va], labels[va], n_top=2)
    assert res["top"].features == [7, 5]  # most frequent first
    assert res["top"].accuracy == 1.0 and res["top"].f1 == 1.0
    assert len(res["all_active"].features) > 20
    # all active features, most frequent first: the two signal features lead, noise follows
    assert res["all_active"].features[:2] == [7, 5]
    assert res["all_active"].f1 > 0.9
    assert res["top"].agn_fraction_val == pytest.approx(labels[va].mean())


def test_agn_svm_needs_two_classes():
    x = np.ones((10, 3))
    with pytest.raises(DataError, match="both classes"):
        agn_svm(x, np.zeros(10, bool), x, np.zeros(10, bool))
    with pytest.raises(DataError, match="no input features"):
        agn_svm(x, np.arange(10) % 2 == 0, x, np.arange(10) % 2 == 0, features=np.array([], int))
