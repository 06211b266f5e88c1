import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from sfnet.analysis.activations import (
    SparseActivations,
    activation_frequency,
    active_strengths,
    correlation_matrix,
    dense_columns,
    feature_label,
    feature_max,
    feature_stats,
    feature_table,
    interpretable_columns,
    rank_features,
    scaled_strength,
    spearman_matrix,
    spearman_with_catalog,
    top_activating,
    variance_explained,
)
from sfnet.errors import DataError, RunFolderError


def tiny() -> SparseActivations:
    # row0: f0=2, f1=1 | row1: f1=3 (f2 kept with value 0 -> inactive) | row2: f2=1, f0=4 | row3: none
    return SparseActivations(
        objid=np.array([10, 11, 12, 13]),
        rows=np.array([5, 6, 7, 8]),
        indices=np.array([[0, 1], [1, 2], [2, 0], [1, 3]]),
        values=np.array([[2.0, 1.0], [3.0, 0.0], [1.0, 4.0], [0.0, 0.0]]),
        d=5,
    )


def test_stats_hand_computed():
    a = tiny()
    s = feature_stats(a)
    np.testing.assert_array_equal(s.count, [2, 2, 1, 0, 0])
    np.testing.assert_allclose(s.frequency, [0.5, 0.5, 0.25, 0, 0])
    np.testing.assert_allclose(activation_frequency(a), s.frequency)
    np.testing.assert_allclose(s.max, [4, 3, 1, 0, 0])
    np.testing.assert_allclose(feature_max(a), s.max)
    np.testing.assert_allclose(s.mean_active[:3], [3, 2, 1])
    assert np.isnan(s.mean_active[3:]).all()
    np.testing.assert_allclose(s.mean, [1.5, 1.0, 0.25, 0, 0])
    np.testing.assert_allclose(s.mean_strength, [1.5 / 4, 1 / 3, 0.25, 0, 0])


def test_rank_labels_columns_and_top():
    a = tiny()
    np.testing.assert_array_equal(rank_features(activation_frequency(a)), [0, 1, 2])
    np.testing.assert_array_equal(rank_features(activation_frequency(a), 2), [0, 1])
    assert feature_label("bpt_lines", 17) == "SL17"
    assert feature_label("metallicity", 61) == "Z61"
    np.testing.assert_allclose(dense_columns(a, [0, 2]), [[2, 0], [0, 0], [4, 1], [0, 0]])
    np.testing.assert_allclose(scaled_strength(a, [0, 1]), [[0.5, 1 / 3], [0, 1], [1, 0], [0, 0]])
    pos, raw = top_activating(a, 0, 9)
    np.testing.assert_array_equal(pos, [2, 0])
    np.testing.assert_allclose(raw, [4, 2])
    pos, _ = top_activating(a, 0, 1)
    np.testing.assert_array_equal(pos, [2])


def test_active_strengths_skip_kept_but_inactive_entries():
    a = tiny()
    # feature 2 is kept in row 1 with value 0 (inactive) and fires with 1 in row 2
    np.testing.assert_allclose(active_strengths(a, 2, 4.0), [0.25])
    np.testing.assert_allclose(sorted(active_strengths(a, 1, 3.0)), [1 / 3, 1.0])
    assert active_strengths(a, 4, 0.0).size == 0  # never active: empty, no division by 0


def test_save_load_roundtrip_and_validation(tmp_path):
    a = tiny()
    a.predictions = np.arange(8, dtype=np.float32).reshape(4, 2)
    a.save(tmp_path / "activations.npz")
    b = SparseActivations.load(tmp_path / "activations.npz")
    assert b.indices.dtype == np.int16 and b.d == 5 and b.split == "val"
    np.testing.assert_array_equal(b.indices, a.indices)
    np.testing.assert_array_equal(b.values, a.values)
    np.testing.assert_array_equal(b.rows, a.rows)
    np.testing.assert_array_equal(b.predictions, a.predictions)
    with pytest.raises(DataError, match="0..4"):
        SparseActivations(np.arange(1), np.arange(1), np.array([[7]]), np.array([[1.0]]), d=5)
    with pytest.raises(DataError, match="differ in length"):
        SparseActivations(np.arange(2), np.arange(1), np.array([[1]]), np.array([[1.0]]), d=5)
    with pytest.raises(RunFolderError, match="analyze"):
        SparseActivations.load(tmp_path / "missing.npz")


def test_variance_explained_exact_and_partial():
    rng = np.random.default_rng(0)
    x = rng.random((200, 3))
    pred = np.column_stack([1 + 2 * x[:, 0] + 3 * x[:, 1], -x[:, 1]])
    y = pred + rng.normal(0, 0.1, pred.shape)
    v = variance_explained(x, pred, y)
    np.testing.assert_array_equal(v.m, [1, 2, 3])
    np.testing.assert_allclose(v.r2_prediction[1], [1, 1], atol=1e-12)
    # m = 1: the share explained equals the squared correlation with the first column
    r = np.corrcoef(x[:, 0], pred[:, 0])[0, 1]
    assert v.r2_prediction[0, 0] == pytest.approx(r**2)
    assert v.r2_prediction[0, 1] < 0.05
    # with the right features the target RMSE is the noise level
    assert v.rmse[1] == pytest.approx([0.1, 0.1], rel=0.2)
    np.testing.assert_allclose(v.model_rmse, np.sqrt(((pred - y) ** 2).mean(0)))
    recs = v.to_records(["a", "b"], ["F0", "F1", "F2"])
    assert recs[1]["features"] == ["F0", "F1"] and recs[1]["r2_prediction"]["a"] == pytest.approx(1)


def test_spearman_matches_scipy_with_ties_and_constants():
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.integers(0, 4, 50), rng.random(50), np.ones(50)]).astype(float)
    y = np.column_stack([x[:, 0] ** 2 + rng.random(50), rng.random(50)])
    rho = spearman_matrix(x, y)
    for i in range(2):
        for j in range(2):
            assert rho[i, j] == pytest.approx(spearmanr(x[:, i], y[:, j]).statistic)
    np.testing.assert_array_equal(rho[2], [0, 0])  # constant column


def test_spearman_with_catalog_handles_missing_values():
    rng = np.random.default_rng(2)
    x = rng.random((40, 2))
    cat = pd.DataFrame({"a": x[:, 0] * 3, "b": rng.random(40)})
    cat.loc[[3, 7], "b"] = np.nan
    rho = spearman_with_catalog(x, cat, ["a", "b"])
    assert rho[0, 0] == pytest.approx(1.0)
    keep = cat["b"].notna().to_numpy()
    assert rho[1, 1] == pytest.approx(spearmanr(x[keep, 1], cat["b"][keep]).statistic)


def test_feature_table_and_correlation_matrix():
    rng = np.random.default_rng(3)
    n = 300
    mass = rng.normal(10, 0.5, n)
    other = rng.normal(size=n)
    # feature 7 tracks mass, feature 3 tracks -other; both always active, k = 2
    acts = SparseActivations(
        objid=np.arange(n),
        rows=np.arange(n),
        indices=np.tile([7, 3], (n, 1)),
        values=np.column_stack([np.exp(mass - 12), 1.0 / (1 + np.exp(other))]),
        d=16,
    )
    cat = pd.DataFrame(
        {
            "objID": np.arange(n),
            "ra": rng.random(n),
            "lgm_tot_p50": mass,
            "lgm_tot_p50_err": rng.random(n),
            "flat": np.ones(n),
            "true_other": other,
            "true_mass": mass + rng.normal(0, 0.01, n),
        }
    )
    assert interpretable_columns(cat) == ["lgm_tot_p50", "true_other", "true_mass"]
    table = feature_table(acts, [7, 3], "metallicity", cat)
    assert list(table["label"]) == ["Z7", "Z3"]
    assert table["correlates"][0].startswith("lgm_tot_p50 (+1.00)")
    assert table["true_correlates"][0].startswith("true_mass (+")
    assert table["true_correlates"][1].startswith("true_other (-1.00)")
    np.testing.assert_allclose(table["f_activated"], [1, 1])
    corr = correlation_matrix(acts, [7, 3])
    expected = np.corrcoef(acts.values[:, 0], acts.values[:, 1])[0, 1]
    np.testing.assert_allclose(corr, [[1, expected], [expected, 1]])
