"""Predictions, pooled features and the predictions table of a trained run; ``sfnet predict``
covers every galaxy with an image, whatever its measurement quality."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sfnet.cli import main
from sfnet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from sfnet.predict import Predictions, pooled_features, predict, table_of_predictions
from sfnet.runs import CONFIG, META, WEIGHTS, RunMeta, build_model, load_run, save_weights


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
    assert "p.txt: output must end in .parquet, .csv, .fits, .ecsv" in capsys.readouterr().err
    assert not (tmp_path / "p.txt").exists()


def _run_folder(root: Path, data: Path) -> Path:
    """An (untrained) finished run folder: predictions need weights, not a good model."""
    cfg = RunConfig(DataConfig(path=str(data), crop=16), ModelConfig(k=2), TrainConfig(epochs=1))
    meta = RunMeta(
        k=2, d=512, backbone="resnet18", target="metallicity", target_names=["oh_p50"],
        target_mean=[9.0], target_std=[0.2], image_mean=[0.5] * 3, image_std=[0.25] * 3,
        split_seed=0, val_fraction=0.2, data_fingerprint="x", n_train=4, n_val=1, crop=16,
        epochs_completed=1,
    )  # fmt: skip
    root.mkdir(parents=True)
    cfg.save(root / CONFIG)
    meta.save(root / META)
    torch.manual_seed(0)
    save_weights(build_model(meta), root / WEIGHTS)
    return root


def _dataset(root: Path) -> Path:
    """8 galaxies: two fail the metallicity cuts, one has no image (row 7)."""
    (root / "images").mkdir(parents=True)
    oh = [8.7, -99.0, np.nan, 8.9, 9.0, 8.8, 8.6, 9.1]
    pd.DataFrame({"objID": np.arange(1, 9), "oh_p50": oh}).to_csv(
        root / "galaxies.csv", index=False
    )
    rng = np.random.default_rng(0)
    for o in range(1, 8):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
            root / "images" / f"{o}.png"
        )
    return root


def test_predict_keeps_galaxies_failing_the_cuts_and_logs_the_rest(tmp_path, caplog):
    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)
    out = tmp_path / "pred.csv"
    with caplog.at_level(logging.INFO, logger="sfnet"):
        assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 0
    t = pd.read_csv(out)
    assert t["objID"].tolist() == [1, 2, 3, 4, 5, 6, 7]  # every galaxy with an image
    assert t["passes_cuts"].tolist() == [True, False, False, True, True, True, True]
    np.testing.assert_allclose(t["measured_oh_p50"], [8.7, -99.0, np.nan, 8.9, 9.0, 8.8, 8.6])
    assert np.isfinite(t["pred_oh_p50"]).all()
    text = caplog.text
    assert "predicted 7 of 8" in text and "1 without an image" in text and "8" in text
    assert "2 fail the metallicity cuts" in text


def test_predict_batch_size_zero_is_one_line(tmp_path, capsys):
    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)
    argv = ["predict", str(run), "--out", str(tmp_path / "p.csv"), "--batch-size", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--batch-size" in err and len(err.splitlines()) == 1


def test_predict_never_writes_over_its_input_or_an_existing_file(tmp_path, capsys):
    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)
    catalog = (data / "galaxies.csv").read_bytes()
    argv = ["predict", str(run), "--data", str(data), "--out"]
    for extra in ([], ["--overwrite"]):  # the catalog being predicted: never
        assert main([*argv, str(data / "galaxies.csv"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "input of this command" in err and len(err.splitlines()) == 1
    assert (data / "galaxies.csv").read_bytes() == catalog
    out = tmp_path / "pred.csv"
    out.write_text("someone's table")
    assert main([*argv, str(out)]) == 2
    assert "use --overwrite" in capsys.readouterr().err and out.read_text() == "someone's table"
    assert main([*argv, str(out), "--overwrite"]) == 0
    assert "pred_oh_p50" in out.read_text()


def test_predict_on_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import errno

    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{out}: no space left" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D", "run"]
