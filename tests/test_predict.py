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
    data = run.data()
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


def test_one_pass_gives_the_predictions_and_the_pooled_features_of_two(trained):
    """predict(pooled=True) runs the trunk once per galaxy and returns, bit for bit, the
    model's own pooled features (its ReLU's output) and what predict alone returns;
    pooled_features is that same pass."""
    run = load_run(trained)
    data = run.data()
    rows = np.arange(len(data))[::2]
    seen, relu_out = [], []
    hook = run.model.trunk.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    grab = run.model.relu.register_forward_hook(lambda m, i, o: relu_out.append(o.float()))
    try:
        alone = predict(run, data.images, rows, 8)
        n_alone, seen[:], relu_out[:] = sum(seen), [], []
        one = predict(run, data.images, rows, 8, pooled=True)
    finally:
        hook.remove()
        grab.remove()
    assert n_alone == len(rows) and sum(seen) == len(rows)
    reference = torch.cat(relu_out).cpu().numpy()
    assert one.pooled.dtype == np.float32 and one.pooled.tobytes() == reference.tobytes()
    assert pooled_features(run, data.images, rows, 8).tobytes() == reference.tobytes()
    for name in ("predictions", "indices", "values"):
        assert getattr(one, name).tobytes() == getattr(alone, name).tobytes(), name
    assert alone.pooled is None  # kept only when asked for


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
    data = run.data()
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
    with pytest.raises(SystemExit) as e:  # refused while parsing, as 'train --epochs 0' is
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the usage
    assert err == "sfnet predict: error: argument --batch-size: must be an integer >= 1, got 0"
    assert not (tmp_path / "p.csv").exists()


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


# ------------------------------------------------- one answer: the CLI and the API agree


def _api_and_cli(run: Path, data: Path, tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    import sfnet

    out = tmp_path / "cli.parquet"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 0
    return sfnet.Run.load(run).predict(data), pd.read_parquet(out)


def test_cli_and_api_predict_the_same_galaxies_bit_for_bit(tmp_path):
    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)
    api, cli = _api_and_cli(run, data, tmp_path)
    pd.testing.assert_frame_equal(api, cli)  # every column, every bit
    # the API keeps what the CLI keeps: galaxies without a measurement or failing a cut
    assert api["objID"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert api["status"].tolist()[:3] == ["", "fails cut oh_p50 > 0", "no measurement"]
    assert api["label_1"].str.startswith("Z").any()  # the atlas's feature labels
    assert (api["label_1"] == "Z" + api["feature_1"].astype(str)).all()


def test_a_bf16_run_is_loaded_and_predicts_in_bf16_everywhere(tmp_path):
    import json

    import sfnet
    from sfnet.precision import FP32

    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)
    meta = json.loads((run / META).read_text())
    meta["precision"] = {"autocast": "bfloat16", "channels_last": False, "reason": "test"}
    (run / META).write_text(json.dumps(meta))
    loaded = sfnet.Run.load(run)
    assert loaded.precision.name == "bf16" and load_run(run).precision == loaded.precision
    api, cli = _api_and_cli(run, data, tmp_path)
    pd.testing.assert_frame_equal(api, cli)
    images = loaded.galaxies(data).images
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = loaded.meta.normalization.apply(torch.from_numpy(images[np.arange(7)]))
        by_hand = loaded.model(x).predictions.float().detach().numpy()
    np.testing.assert_array_equal(
        api["pred_oh_p50"], loaded.meta.to_physical(by_hand)[:, 0].astype(np.float32)
    )
    loaded.precision = FP32
    assert not np.array_equal(predict(loaded, images).predictions[:, 0], api["pred_oh_p50"])


def test_every_kind_of_input_gets_the_runs_resize_never_a_wrong_scale_crop(tmp_path):
    import json

    import sfnet

    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)
    cfg = RunConfig.load(run / CONFIG)
    cfg.data.resize = 20
    cfg.save(run / CONFIG)
    meta = json.loads((run / META).read_text())
    (run / META).write_text(json.dumps({**meta, "resize": 20}))
    loaded = sfnet.Run.load(run)
    rng = np.random.default_rng(3)
    big = rng.integers(0, 255, (3, 3, 28, 28), dtype=np.uint8)
    folder = tmp_path / "cutouts"
    folder.mkdir()
    pil = [Image.fromarray(im.transpose(1, 2, 0)) for im in big]
    for i, im in enumerate(pil):
        im.save(folder / f"{i}.png")
    by_array = loaded.predict(big)["pred_oh_p50"].to_numpy()
    np.testing.assert_array_equal(loaded.predict(folder)["pred_oh_p50"], by_array)
    np.testing.assert_array_equal(loaded.predict(pil)["pred_oh_p50"], by_array)
    one = loaded.predict(pil[1])["pred_oh_p50"].to_numpy()
    np.testing.assert_array_equal(one, by_array[1:2])
    # by hand: bicubic to the run's 20 px, then the centre 16 px
    small = np.stack([np.asarray(im.resize((20, 20), Image.Resampling.BICUBIC)) for im in pil])
    by_hand = predict(loaded, small.transpose(0, 3, 1, 2)[:, :, 2:18, 2:18].copy())
    np.testing.assert_array_equal(by_hand.predictions[:, 0], by_array)
