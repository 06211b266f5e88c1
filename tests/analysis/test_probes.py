import numpy as np
import pandas as pd
import pytest

from sfnet.analysis.probes import load_feature_table, probe_targets, ridge_r2
from sfnet.errors import DataError


def test_probes_linear_vs_nonlinear_and_memorisation():
    rng = np.random.default_rng(0)
    n, f = 500, 6
    x = rng.normal(size=(n, f))
    y = np.stack([2 * x[:, 0] + 0.05 * rng.normal(size=n), np.sign(x[:, 1]) * x[:, 2] ** 2], axis=1)
    tr, va = np.arange(400), np.arange(400, n)
    res = probe_targets(x[tr], y[tr], x[va], y[va], ["lin", "nonlin"], n_jobs=1)
    lin_tr = res.rmse[("linear", "train")]
    xgb_tr = res.rmse[("xgboost", "train")]
    xgb_va = res.rmse[("xgboost", "val")]
    assert lin_tr[0] < 0.1  # linear target recovered by the linear probe
    assert xgb_tr[1] < lin_tr[1]  # non-linear target: trees beat the linear probe
    assert xgb_va[1] < 0.5 * xgb_tr[1]  # fitting on validation memorises
    assert set(res.rmse) == {(m, s) for m in ("linear", "xgboost") for s in ("train", "val")}


def test_ridge_r2():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 5))
    t = np.stack([x[:, 0] + 0.1 * rng.normal(size=300), rng.normal(size=300), np.zeros(300)], 1)
    r2 = ridge_r2(x[:200], t[:200], x[200:], t[200:])
    assert r2[0] > 0.9
    assert r2[1] < 0.1
    assert np.isnan(r2[2])  # constant column: undefined


def test_load_feature_table_formats_and_alignment(tmp_path):
    ids = np.array([1237648720693755918, 5, 7, 9], dtype=np.int64)
    feats = np.arange(12, dtype=np.float64).reshape(4, 3)
    want = np.array([9, 1237648720693755918, 5])
    # parquet (extra rows allowed, any order)
    df = pd.DataFrame(feats, columns=["a", "b", "c"])
    df.insert(0, "objID", ids)
    df.to_parquet(tmp_path / "f.parquet")
    got = load_feature_table(tmp_path / "f.parquet", want)
    np.testing.assert_array_equal(got, feats[[3, 0, 1]])
    # npz
    np.savez(tmp_path / "f.npz", objID=ids, features=feats)
    np.testing.assert_array_equal(load_feature_table(tmp_path / "f.npz", want), feats[[3, 0, 1]])
    # structured npy, string dataset ids
    rec = np.zeros(4, dtype=[("objID", "i8"), ("u", "f4"), ("v", "f4")])
    rec["objID"], rec["u"], rec["v"] = ids, feats[:, 0], feats[:, 1]
    np.save(tmp_path / "f.npy", rec)
    got = load_feature_table(tmp_path / "f.npy", want.astype(str))
    np.testing.assert_array_equal(got, feats[[3, 0, 1]][:, :2])


def test_load_feature_table_errors(tmp_path):
    ids = np.array([1, 2, 3])
    np.savez(tmp_path / "f.npz", objID=ids, features=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"f\.npz: 2 of 3 objIDs .* missing"):
        load_feature_table(tmp_path / "f.npz", np.array([1, 4, 5]))
    np.savez(tmp_path / "d.npz", objID=np.array([1, 1, 2]), features=np.ones((3, 2)))
    with pytest.raises(DataError, match="duplicated"):
        load_feature_table(tmp_path / "d.npz", ids)
    np.save(tmp_path / "plain.npy", np.ones((3, 2)))
    with pytest.raises(DataError, match="structured array"):
        load_feature_table(tmp_path / "plain.npy", ids)
    np.savez(tmp_path / "fl.npz", objID=np.array([1.0, 2.0]), features=np.ones((2, 2)))
    with pytest.raises(DataError, match="float"):
        load_feature_table(tmp_path / "fl.npz", ids)
    np.savez(tmp_path / "nan.npz", objID=ids, features=np.array([[1, np.nan]] * 3))
    with pytest.raises(DataError, match="non-finite"):
        load_feature_table(tmp_path / "nan.npz", ids)
    with pytest.raises(DataError, match="no such"):
        load_feature_table(tmp_path / "nope.parquet", ids)
