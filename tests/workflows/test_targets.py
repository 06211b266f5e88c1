"""Any catalog column as a target, end to end: train -> predict -> analyze from the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sfnet.cli import main
from sfnet.config import RunConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sdss-metallicity-400"
TRAIN = [
    "--k",
    "2",
    "--batch-size",
    "8",
    "--lr",
    "0.01",
    "--device",
    "cpu",
    "--no-progress",
    "--epochs",
    "1",
]


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Path:
    from sfnet.data.synthetic import synthesize

    return synthesize(tmp_path_factory.mktemp("survey") / "s", 32, size=32, seed=5, workers=1)


def _train_predict_analyze(
    data: Path, target: str, out: Path, crop: list[str], analyze: bool = True
) -> pd.DataFrame:
    run = out / "run"
    args = ["train", "--data", str(data), "--target", target, "--out", str(run), *crop, *TRAIN]
    assert main(args) == 0
    assert main(["predict", str(run), "--data", str(data), "--out", str(out / "p.csv")]) == 0
    if analyze:
        assert main(["analyze", str(run), "--n-features", "2"]) == 0
    return pd.read_csv(out / "p.csv")


def test_any_synthetic_catalog_column_trains_predicts_and_analyses(survey, tmp_path):
    # a catalog column, a true_* factor under log10 with its unit, and a quality cut
    target = "lgm_tot_p50, log10(true_r50_arcsec); z < 0.12"
    names = ["lgm_tot_p50", "log_true_r50_arcsec"]
    table = _train_predict_analyze(survey, target, tmp_path, ["--crop", "32"])
    assert [f"pred_{n}" for n in names] == [c for c in table.columns if c.startswith("pred_")]
    assert all(f"measured_{n}" in table.columns for n in names)
    # the spec is saved with the run and reloads from its folder
    cfg = RunConfig.load(tmp_path / "run" / "config.toml")
    assert cfg.data.target == target
    summary = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert summary["target_names"] == names
    assert summary["units"] == {"lgm_tot_p50": "dex(solMass)", "log_true_r50_arcsec": "dex(arcsec)"}
    assert "F" in summary["frequent_features"][0]  # custom targets label features F<index>


def test_a_real_sample_column_with_unit_and_cut_trains_end_to_end(tmp_path):
    data = tmp_path / "real"
    (data / "images").mkdir(parents=True)
    cat = pd.read_csv(EXAMPLE / "galaxies.csv", dtype={"objID": str}).head(24)
    cat["oh_err"] = np.linspace(0.01, 0.1, len(cat))  # a column of the user's own
    cat.to_csv(data / "galaxies.csv", index=False)
    for oid in cat["objID"]:
        shutil.copy(EXAMPLE / "images" / f"{oid}.jpg", data / "images")
    target = "oh_p50 [dex]; oh_err < 0.09"
    crop = ["--resize", "32", "--crop", "32"]
    table = _train_predict_analyze(data, target, tmp_path, crop, analyze=False)
    assert "pred_oh_p50" in table.columns
    assert table["passes_cuts"].sum() == (cat["oh_err"] < 0.09).sum()


def test_a_catalog_unit_reaches_the_prediction_files_and_the_api(tmp_path):
    import astropy.units as u
    from astropy.table import Table

    from sfnet.runs import load_run

    data = tmp_path / "fits"
    (data / "images").mkdir(parents=True)
    cat = pd.read_csv(EXAMPLE / "galaxies.csv", dtype={"objID": str}).head(24)
    t = Table({"objID": cat["objID"].astype(np.int64), "mass": np.logspace(9, 11, len(cat))})
    t["mass"].unit = "solMass"  # a unit only this catalog knows
    t.write(data / "galaxies.fits")
    for oid in cat["objID"]:
        shutil.copy(EXAMPLE / "images" / f"{oid}.jpg", data / "images")
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--target", "log10(mass)", "--out", str(run)]
    assert main([*args, "--resize", "32", "--crop", "32", *TRAIN]) == 0
    for ext in ("ecsv", "fits"):
        out = tmp_path / f"p.{ext}"
        assert main(["predict", str(run), "--out", str(out)]) == 0
        written = Table.read(out)
        for col in ("pred_log_mass", "measured_log_mass"):
            assert u.Unit(written[col].unit) == u.dex(u.solMass), (ext, col, written[col].unit)
    api = load_run(run).predict(as_table=True)
    assert api["pred_log_mass"].unit == u.dex(u.solMass)
    assert np.array_equal(api["pred_log_mass"].value, np.asarray(written["pred_log_mass"]))
