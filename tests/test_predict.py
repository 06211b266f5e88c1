"""``predict`` covers every galaxy with an image, whatever its measurement quality."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from sfnet.cli import main
from sfnet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from sfnet.runs import CONFIG, META, WEIGHTS, RunMeta, build_model, save_weights


def _run_folder(root: Path, data: Path) -> Path:
    """An (untrained) finished run folder: predictions need weights, not a good model."""
    cfg = RunConfig(DataConfig(data=str(data), crop=16), ModelConfig(k=2), TrainConfig(epochs=1))
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
