import numpy as np
import pytest

from sfnet.analysis.metrics import group_rmse, rmse


def test_rmse_helpers():
    assert rmse(np.array([[1.0], [3.0]]), np.array([[0.0], [0.0]]))[0] == pytest.approx(np.sqrt(5))
    assert group_rmse(np.array([3.0, 4.0])) == pytest.approx(np.sqrt(12.5))


def test_rmse_is_per_column_and_accepts_vectors():
    pred = np.array([[1.0, 0.0], [3.0, 2.0]])
    y = np.zeros((2, 2))
    np.testing.assert_allclose(rmse(pred, y), [np.sqrt(5), np.sqrt(2)])
    np.testing.assert_allclose(rmse(np.array([1.0, -1.0]), np.zeros(2)), [1.0])
