import numpy as np
import pytest

from sfnet.analysis.pca import pca_regression
from sfnet.errors import DataError

BASIS = np.linalg.qr(np.random.default_rng(42).normal(size=(20, 3)))[0].T


def _data(n, rng, basis=BASIS):
    # 3 latent directions with decreasing variance, embedded in 20 dims; target = 2nd latent.
    z = rng.normal(size=(n, 3)) * np.array([10.0, 3.0, 1.0])
    x = z @ basis + 0.01 * rng.normal(size=(n, 20))
    y = np.stack([z[:, 1], z[:, 0] + z[:, 2]], axis=1)
    return x, y


def test_pca_regression_needs_enough_components():
    rng = np.random.default_rng(0)
    xtr, ytr = _data(400, rng)
    xva, yva = _data(200, rng)
    res = pca_regression(xtr, ytr, xva, yva, ks=[1, 2, 3])
    assert res.rmse.shape == (3, 2)
    # target 0 lives on the 2nd component: k=1 cannot fit it, k=2 can
    assert res.rmse[0, 0] > 2.0
    assert res.rmse[1, 0] < 0.1
    # target 1 needs the 3rd component
    assert res.rmse[1, 1] > 0.5 and res.rmse[2, 1] < 0.1
    np.testing.assert_allclose(res.group_rmse, np.sqrt((res.rmse**2).mean(1)))
    # variance: 8 requested, capped by nothing here; first three carry nearly everything
    assert len(res.variance_ratio) == 8
    assert res.cumulative_variance[2] > 0.99
    assert np.all(np.diff(res.variance_ratio) <= 1e-12)


def test_pca_regression_rejects_bad_k_and_shapes():
    rng = np.random.default_rng(1)
    x, y = _data(10, rng)
    with pytest.raises(DataError, match="k must be"):
        pca_regression(x, y, x, y, ks=[0])
    with pytest.raises(DataError, match="k must be"):
        pca_regression(x, y, x, y, ks=[11])
    with pytest.raises(DataError, match="one row per target"):
        pca_regression(x, y[:5], x, y, ks=[1])
    x2 = x.copy()
    x2[0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        pca_regression(x2, y, x, y, ks=[1])
