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

    assert main(["prepare", str(data), "--resize", "48", "--workers", "2", "--no-progress"]) == 0
    assert "packed 400 images (48x48 px)" in capsys.readouterr().out

    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--target", "metallicity", "--k", "2", "--resize",
            "48", "--crop", "48", "--epochs", "1", "--batch-size", "64", "--device", "cpu",
            "--out", str(run), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "oh_p50: validation RMSE" in out

    loaded = load_run(run)
    assert loaded.meta.n_train + loaded.meta.n_val == 400 and loaded.meta.n_val == 80
    galaxies = loaded.load_data()
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


def copy_sample(dest: Path, n: int) -> Path:
    """The first ``n`` galaxies of the example folder, copied (tests never touch examples/)."""
    table = pd.read_csv(SAMPLE / "galaxies.csv", dtype={"objID": str}).iloc[:n]
    (dest / "images").mkdir(parents=True)
    table.to_csv(dest / "galaxies.csv", index=False)
    for o in table["objID"]:
        shutil.copy2(SAMPLE / "images" / f"{o}.jpg", dest / "images" / f"{o}.jpg")
    return dest


def test_readme_sequence_prepare_then_train_at_64_px_then_explain_and_open(tmp_path, capsys):
    """README: `sfnet prepare DATA` (whole 128 px images), then `train --resize 64 --crop 64`;
    afterwards explain and open_dataset(DATA, resize=64) work too."""
    import sfnet
    from sfnet.data.store import FolderImages

    data = copy_sample(tmp_path / "sdss", 24)
    assert main(["prepare", str(data), "--workers", "1", "--no-progress"]) == 0
    assert "(128x128 px)" in capsys.readouterr().out
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--target", "metallicity", "--k", "2", "--resize",
            "64", "--crop", "64", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
            "--out", str(run), "--no-progress"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert main(["analyze", str(run)]) == 0
    objid = pd.read_csv(data / "galaxies.csv", dtype={"objID": str})["objID"][3]
    assert main(["explain", str(run), "--objid", objid, "--out", str(tmp_path / "ex")]) == 0
    assert (tmp_path / "ex" / f"{objid}.png").is_file()
    opened = sfnet.open_dataset(data, resize=64)
    assert opened.images.shape == (24, 3, 64, 64) and isinstance(opened.images, FolderImages)
    # with a store of that geometry added, the same calls read it, and the first one stays
    assert main(["prepare", str(data), "--resize", "64", "--workers", "1", "--no-progress"]) == 0
    capsys.readouterr()
    fast = sfnet.open_dataset(data, resize=64)
    assert isinstance(fast.images, PackedImages)
    assert np.array_equal(fast.images[np.arange(24)], opened.images[np.arange(24)])
    assert (data / "packed" / "native" / "images.u8").is_file()
    assert load_run(run).load_data().images.shape == (24, 3, 64, 64)
