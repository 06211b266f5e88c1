"""Integration on the real 400-galaxy SDSS sample: prepare -> short training -> predict."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from sfnet.cli import main
from sfnet.data.store import PackedImages
from sfnet.runs import load_run

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sdss-metallicity-400"


def test_real_sample_prepare_train_predict(tmp_path, capsys):
    data = tmp_path / "sdss"
    shutil.copytree(SAMPLE, data)
    ids = pd.read_csv(data / "galaxies.csv", dtype={"objID": str})["objID"].tolist()
    assert len(ids) == 400 and all(len(i) == 19 for i in ids)

    assert main(["prepare", str(data), "--resize", "48", "--workers", "2", "--quiet"]) == 0
    assert "packed 400 images (48x48 px)" in capsys.readouterr().out

    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--target", "metallicity", "--k", "2", "--resize",
            "48", "--crop", "48", "--epochs", "1", "--batch-size", "64", "--device", "cpu",
            "--out", str(run), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "oh_p50: validation RMSE" in out

    loaded = load_run(run)
    assert loaded.meta.n_train + loaded.meta.n_val == 400 and loaded.meta.n_val == 80
    galaxies = loaded.data()
    assert isinstance(galaxies.images, PackedImages)  # training read the packed store
    assert galaxies.fingerprint == loaded.meta.data_fingerprint
    skipped = {c.name for c in galaxies.cuts if c.skipped}
    assert skipped == {"lgm_tot_p50 > 0", "sfr_tot_p50 > -10"}

    preds = tmp_path / "preds.csv"
    assert main(["predict", str(run), "--out", str(preds)]) == 0
    table = pd.read_csv(preds, dtype={"objID": str})
    assert table["objID"].tolist() == ids  # 19-digit IDs round-trip exactly, in catalog order
    assert np.isfinite(table["pred_oh_p50"]).all()
    assert (table["split"] == "val").sum() == 80
    # Predictions are in dex around the sample's metallicities, not standardized units.
    assert 7.5 < table["pred_oh_p50"].median() < 10.0
    assert set(table.columns) >= {"feature_1", "activation_1", "feature_2", "activation_2"}
