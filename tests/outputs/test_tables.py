"""Prediction tables: Parquet/CSV/FITS/ECSV by extension, units that survive a round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.table import Table

from sfnet.cli import main
from sfnet.data.dataset import save_npz
from sfnet.errors import UserError
from sfnet.outputs.tables import target_unit, write_table
from sfnet.predict import Predictions, table_of_predictions
from tests.conftest import make_toy_images, toy_train_args

LOGFLUX = u.dex(1e-17 * u.erg / u.s / u.cm**2)


def _frame() -> pd.DataFrame:
    pred = Predictions(
        predictions=np.array([[8.7, 1.1, 2.0, 0.5, 0.9], [8.9, 1.3, 2.2, 0.7, 1.0]], np.float32),
        indices=np.array([[5, 9], [7, 9]], np.int64),
        values=np.array([[0.8, 0.0], [1.5, 0.2]], np.float32),
    )
    names = ["oh_p50", "log_nii_6584_flux", "log_h_alpha_flux", "log_oiii_5007_flux", "x"]
    return table_of_predictions(np.array([1237648702973411443, 2], np.int64), names, pred)


def test_frame_marks_inactive_features():
    f = _frame()
    assert list(f["feature_2"]) == [-1, 9] and list(f["activation_2"]) == [0.0, pytest.approx(0.2)]
    assert target_unit("pred_oh_p50") == u.dex and target_unit("pred_x") is None
    assert target_unit("measured_oh_p50") == u.dex
    assert target_unit("log_h_beta_flux") == LOGFLUX


@pytest.mark.parametrize("ext", [".fits", ".ecsv"])
def test_astropy_formats_round_trip_with_units(tmp_path, ext):
    path = write_table(_frame(), tmp_path / f"p{ext}")
    t = Table.read(path)
    assert t["objID"][0] == 1237648702973411443 and t["objID"].dtype.kind == "i"
    assert t["pred_oh_p50"].unit == u.dex
    assert t["pred_log_nii_6584_flux"].unit == LOGFLUX
    assert t["pred_x"].unit is None and t["feature_1"].unit is None
    assert "1e-17 erg/s/cm^2" in t["pred_log_h_alpha_flux"].description
    np.testing.assert_allclose(np.asarray(t["pred_oh_p50"]), [8.7, 8.9], rtol=1e-6)


def test_pandas_formats_and_a_bad_extension(tmp_path):
    f = _frame()
    pd.testing.assert_frame_equal(pd.read_parquet(write_table(f, tmp_path / "p.parquet")), f)
    assert list(pd.read_csv(write_table(f, tmp_path / "p.csv")).columns) == list(f.columns)
    with pytest.raises(UserError, match=r"p\.xlsx: output must end in .parquet, .csv, .fits"):
        write_table(f, tmp_path / "p.xlsx")
    assert not (tmp_path / "p.xlsx").exists()


def test_cli_predict_writes_fits_with_units(tmp_path, capsys):
    images, y = make_toy_images(64)
    npz = tmp_path / "z.npz"
    save_npz(npz, images, 8.0 + y[:, :1] / 20, np.arange(64) + 10**15, ["oh_p50"])
    run = tmp_path / "run"
    assert main(["train", "--data", str(npz), "--out", str(run), *toy_train_args(1)]) == 0
    out = tmp_path / "pred.fits"
    assert main(["predict", str(run), "--out", str(out)]) == 0
    t = Table.read(out)
    assert len(t) == 64 and set(t["split"]) == {"train", "val"}
    assert {"objID", "pred_oh_p50", "feature_4", "activation_4"} <= set(t.colnames)
    assert t["pred_oh_p50"].unit == u.dex and t["objID"][0] == 10**15
    csv = tmp_path / "pred.csv"
    assert main(["predict", str(run), "--out", str(csv)]) == 0
    np.testing.assert_allclose(
        pd.read_csv(csv)["pred_oh_p50"], np.asarray(t["pred_oh_p50"]), rtol=1e-6
    )


def test_catalog_column_targets_get_their_units_in_tables():
    import astropy.units as u
    import pandas as pd

    from sfnet.outputs.tables import target_unit, to_astropy

    assert target_unit("pred_lgm_tot_p50") == u.dex(u.solMass)
    assert target_unit("measured_log_h_alpha_flux") == u.dex(1e-17 * u.erg / u.s / u.cm**2)
    assert target_unit("pred_mystery") is None
    frame = pd.DataFrame({"objID": [1, 2], "pred_r50": [1.0, 2.0], "measured_r50": [1.1, 2.1]})
    t = to_astropy(frame, units={"r50": "arcsec"})
    assert t["pred_r50"].unit == u.arcsec and t["measured_r50"].unit == u.arcsec


#: The unit every column of a table sfnet writes must carry (None: a plain number or label).
LOGFLUX_UNIT = "dex(1e-17 erg / (s cm2))"
UNITS = {
    "oh_p50": "dex",
    "log_nii_6584_flux": LOGFLUX_UNIT,
    "log_h_alpha_flux": LOGFLUX_UNIT,
    "log_oiii_5007_flux": LOGFLUX_UNIT,
    "log_h_beta_flux": LOGFLUX_UNIT,
    "h_alpha_flux": "1e-17 erg / (s cm2)",
    "h_alpha_flux_err": "1e-17 erg / (s cm2)",
    "ra": "deg",
    "dec": "deg",
    "sfnet_mean": "dex",
    "sfnet_se": "dex",
    "pca_rmse": "dex",
}
UNITLESS = ("objID", "split", "passes_cuts", "status", "label_", "feature_", "activation_", "f", "target", "k", "repeats")  # fmt: skip


def _expected_unit(column: str) -> str | None:
    for prefix in ("pred_", "measured_", "true_"):
        column = column.removeprefix(prefix)
    if column in UNITS:
        return UNITS[column]
    assert column.startswith(UNITLESS), f"column {column!r}: which unit?"
    return None


def _walk_units(frame: pd.DataFrame, tmp_path, name: str) -> None:
    units = {}
    for ext in (".fits", ".ecsv"):
        t = Table.read(write_table(frame, tmp_path / f"{name}{ext}"))
        assert t.colnames == list(frame.columns)
        units[ext] = {c: None if t[c].unit is None else t[c].unit.to_string() for c in t.colnames}
        for c in t.colnames:
            assert units[ext][c] == _expected_unit(c), (name, ext, c, units[ext][c])
    assert units[".fits"] == units[".ecsv"]  # the same unit strings in both formats


def test_every_column_of_every_written_table_has_its_unit(tmp_path, capsys):
    from tests.test_predict import _dataset, _run_folder

    # predictions as `sfnet predict` writes them (measured values, cuts, features)
    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)
    for ext in (".fits", ".ecsv"):
        assert main(["predict", str(run), "--out", str(tmp_path / f"p{ext}")]) == 0
    pred = Table.read(tmp_path / "p.fits").to_pandas()
    assert "measured_oh_p50" in pred and "activation_2" in pred
    _walk_units(pred, tmp_path, "pred")
    assert Table.read(tmp_path / "p.ecsv")["measured_oh_p50"].unit == u.dex
    # a bpt_lines prediction table with measured line fluxes and catalog columns
    lines = _frame().drop(columns=["pred_x"])
    for c in ("log_nii_6584_flux", "log_h_alpha_flux", "log_oiii_5007_flux", "log_h_beta_flux"):
        lines[f"measured_{c}"] = [1.0, 2.0]
    lines["h_alpha_flux"], lines["h_alpha_flux_err"] = [100.0, 50.0], [3.0, 2.0]
    lines["ra"], lines["dec"] = [150.1, 20.0], [2.2, -1.0]
    _walk_units(lines, tmp_path, "lines")
    # the comparison's RMSE table and the API's feature activations
    rmse = pd.DataFrame(
        {"target": ["metallicity"], "k": [4], "sfnet_mean": [0.1], "sfnet_se": [0.01],
         "repeats": [3], "pca_rmse": [0.12]}
    )  # fmt: skip
    _walk_units(rmse, tmp_path, "rmse")
    _walk_units(pd.DataFrame({"objID": [1, 2], "f0": [0.0, 1.5], "f1": [2.0, 0.0]}), tmp_path, "f")
