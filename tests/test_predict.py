"""Predictions, pooled features and the predictions table of a trained run; ``sfnet predict``."""

import numpy as np
import pandas as pd
import pytest

from sfnet.cli import main
from sfnet.predict import Predictions, pooled_features, predict, table_of_predictions
from sfnet.runs import load_run


@pytest.fixture(scope="module")
def trained(trained_toy_run):
    return trained_toy_run


def test_predictions_are_physical_and_head_is_linear_in_features(trained):
    run = load_run(trained)
    data = run.load_data()
    p = predict(run, data.images)
    f = pooled_features(run, data.images)
    assert f.shape == (len(data), 512)
    # rebuild the prediction from the top-k features by hand: head(sparse) * std + mean
    w = run.model.head.weight.detach().numpy()
    b = run.model.head.bias.detach().numpy()
    sparse = np.zeros_like(f)
    np.put_along_axis(sparse, p.indices, p.values, axis=1)
    manual = run.meta.to_physical(sparse @ w.T + b)
    np.testing.assert_allclose(manual, p.predictions, atol=1e-3)
    assert abs(p.predictions[:, 0].mean() - data.y[:, 0].mean()) < 2 * data.y[:, 0].std()


def test_table_marks_inactive_kept_features():
    pred = Predictions(
        predictions=np.array([[1.0, 2.0], [3.0, 4.0]]),
        indices=np.array([[7, 3], [5, 9]]),
        values=np.array([[0.5, 0.0], [2.0, 1.0]], dtype=np.float32),
    )
    t = table_of_predictions(np.array([11, 12]), ["a", "b"], pred)
    assert list(t.columns) == [
        "objID",
        "pred_a",
        "pred_b",
        "feature_1",
        "activation_1",
        "feature_2",
        "activation_2",
    ]
    assert t["feature_2"].tolist() == [-1, 9]  # value 0: kept by TopK but not active
    assert t["activation_2"].tolist() == [0.0, 1.0]
    assert t["pred_b"].tolist() == [2.0, 4.0]
    dense = table_of_predictions(np.array([1]), ["a"], Predictions(np.array([[0.1]]), None, None))
    assert list(dense.columns) == ["objID", "pred_a"]


def test_cli_predict_writes_the_run_predictions_and_its_split(trained, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["predict", str(trained), "--out", str(out), "--batch-size", "64"]) == 0
    assert f"to {out}" in capsys.readouterr().out
    table = pd.read_csv(out)
    run = load_run(trained)
    data = run.load_data()
    assert (table["split"] == "val").sum() == run.meta.n_val
    expected = predict(run, data.images).predictions
    np.testing.assert_allclose(table[["pred_radius", "pred_redness"]], expected, atol=1e-5)
    assert table["objID"].tolist() == data.objid.tolist()


def test_cli_predict_refuses_an_unknown_output_format(trained, tmp_path, capsys):
    assert main(["predict", str(trained), "--out", str(tmp_path / "p.txt")]) == 2
    assert "p.txt: output must end in .parquet or .csv" in capsys.readouterr().err
    assert not (tmp_path / "p.txt").exists()
