from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from sfnet.data.catalog import (
    TARGET_COLUMNS,
    find_catalog,
    read_catalog,
    select_target,
    target_names,
)
from sfnet.errors import DataError
from sfnet.physics import BPT_LINES

# Above 2**53: float64 cannot hold these exactly (neighbouring IDs collapse).
BIG_IDS = [1237648704043942146, 1237648704043942147, 1237667292122513532]


def _frame(ids=BIG_IDS, **cols) -> pd.DataFrame:
    df = pd.DataFrame({"objID": np.array(ids, dtype=np.int64)})
    for k, v in cols.items():
        df[k] = v
    return df


def test_target_names_and_columns():
    assert target_names("metallicity") == ["oh_p50"]
    assert target_names("bpt_lines") == [
        "log_nii_6584_flux",
        "log_h_alpha_flux",
        "log_oiii_5007_flux",
        "log_h_beta_flux",
    ]
    assert TARGET_COLUMNS["bpt_lines"] == BPT_LINES
    with pytest.raises(DataError, match="unknown target"):
        target_names("mass")


@pytest.mark.parametrize("fmt", ["csv", "parquet", "fits"])
def test_each_format_keeps_19_digit_objids_exact(tmp_path, fmt):
    df = _frame(oh_p50=[8.9, 9.0, 8.7], ra=[1.0, 2.0, 3.0])
    path = tmp_path / f"galaxies.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        Table.from_pandas(df).write(path)
    assert find_catalog(tmp_path) == path
    got = read_catalog(path)
    assert got["objID"].dtype == np.int64
    assert got["objID"].tolist() == BIG_IDS  # exact, and the two neighbours stay distinct
    assert np.allclose(got["oh_p50"], [8.9, 9.0, 8.7])


def test_fits_string_objids_are_decoded(tmp_path):
    t = Table({"objid": np.array([b"J001", b"J002"]), "oh_p50": [8.8, 8.9]})
    t.write(tmp_path / "galaxies.fits")
    got = read_catalog(tmp_path / "galaxies.fits")
    assert got["objID"].tolist() == ["J001", "J002"]  # lower-case column renamed


def test_string_objids_stay_text(tmp_path):
    (tmp_path / "galaxies.csv").write_text("objID,oh_p50\nNGC4414,8.9\n00042,9.0\n")
    got = read_catalog(tmp_path / "galaxies.csv")
    assert got["objID"].tolist() == ["NGC4414", "00042"]  # no int coercion of a mixed column


def test_float_objid_in_csv_is_refused_with_file_and_column(tmp_path):
    p = tmp_path / "galaxies.csv"
    p.write_text("objID,oh_p50\n1.237648704043942e+18,8.9\n1.237648704043942e+18,8.8\n")
    with pytest.raises(DataError, match=r"galaxies\.csv.*'objID'.*float"):
        read_catalog(p)


def test_float_objid_in_parquet_is_refused(tmp_path):
    p = tmp_path / "galaxies.parquet"
    pd.DataFrame({"objID": [1.0, 2.0], "oh_p50": [8.9, 9.0]}).to_parquet(p)
    with pytest.raises(DataError, match=r"galaxies\.parquet.*'objID'.*floating"):
        read_catalog(p)


@pytest.mark.parametrize(
    "text, message",
    [
        ("ra,oh_p50\n1,8.9\n", "missing column 'objID'"),
        ("objID,oh_p50\n5,8.9\n5,9.0\n", "duplicated objID"),
        ("objID,oh_p50\n5,8.9\n,9.0\n", "empty in row"),
        ("objID,oh_p50\n", "no rows"),
    ],
)
def test_bad_csv_catalogs(tmp_path, text, message):
    p = tmp_path / "galaxies.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=message) as e:
        read_catalog(p)
    assert str(p) in str(e.value)


def test_find_catalog_none_or_several(tmp_path):
    with pytest.raises(DataError, match="no catalog found"):
        find_catalog(tmp_path)
    (tmp_path / "galaxies.csv").write_text("objID\n1\n")
    (tmp_path / "galaxies.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="several catalogs"):
        find_catalog(tmp_path)


def test_metallicity_cuts_count_each_removal():
    ids = list(range(1, 9))
    df = _frame(
        ids,
        oh_p50=[8.9, np.nan, np.inf, -99.0, 8.8, 8.7, 8.6, 9.1],
        lgm_tot_p50=[10.0, 10.0, 10.0, 10.0, -1.0, 10.5, 10.1, 9.9],
        sfr_tot_p50=[0.1, 0.0, 0.0, 0.0, 0.0, -99.0, -0.5, np.nan],
    )
    sel = select_target(df, "metallicity", source="cat.csv")
    counts = {c.name: c.removed for c in sel.cuts}
    assert counts == {
        "oh_p50 finite": 2,
        "oh_p50 > 0": 1,
        "lgm_tot_p50 > 0": 1,
        "sfr_tot_p50 > -10": 2,  # -99 and NaN
    }
    assert not any(c.skipped for c in sel.cuts)
    assert sel.catalog["objID"].tolist() == [1, 7]
    assert sel.catalog.index.tolist() == [0, 1]
    assert sel.y.dtype == np.float32 and sel.y.shape == (2, 1)
    assert np.allclose(sel.y[:, 0], [8.9, 8.6])
    assert sel.names == ["oh_p50"] and sel.n_input == 8


def test_metallicity_cuts_skipped_where_columns_are_absent():
    sel = select_target(_frame(oh_p50=[8.9, 0.0, 9.0]), "metallicity", source="x.csv")
    skipped = {c.name: c.reason for c in sel.cuts if c.skipped}
    assert set(skipped) == {"lgm_tot_p50 > 0", "sfr_tot_p50 > -10"}
    assert "x.csv" in skipped["lgm_tot_p50 > 0"]
    assert len(sel.y) == 2


def _bpt_frame() -> pd.DataFrame:
    n = 6
    cols: dict[str, list[float]] = {}
    for line in BPT_LINES:
        cols[line] = [100.0] * n
        cols[f"{line}_err"] = [10.0] * n
    cols["h_alpha_flux"] = [300.0, 300.0, 300.0, 2e5, np.nan, 300.0]
    cols["h_beta_flux_err"] = [10.0, 40.0, 0.0, 10.0, 10.0, 10.0]  # S/N 2.5, undefined
    return _frame(list(range(n)), **cols)


def test_bpt_cuts_snr_flux_limit_nan_and_log10():
    sel = select_target(_bpt_frame(), "bpt_lines", source="cat.csv")
    counts = {c.name: c.removed for c in sel.cuts}
    assert counts == {
        "line fluxes finite": 1,
        "S/N > 3 in all four lines": 2,
        "every flux < 100000": 1,
    }
    assert sel.catalog["objID"].tolist() == [0, 5]
    assert sel.y.shape == (2, 4) and sel.y.dtype == np.float32
    assert np.allclose(sel.y[0], np.log10([100.0, 300.0, 100.0, 100.0]))


def test_missing_metallicity_column_names_column_and_file():
    with pytest.raises(DataError, match=r"data/galaxies\.csv: missing column 'oh_p50'"):
        select_target(_frame(ra=[1.0, 2.0, 3.0]), "metallicity", source="data/galaxies.csv")


def test_missing_err_column_is_an_error():
    df = _bpt_frame().drop(columns=["oiii_5007_flux_err"])
    with pytest.raises(DataError, match=r"f\.fits: missing column 'oiii_5007_flux_err'"):
        select_target(df, "bpt_lines", source="f.fits")


def test_non_numeric_target_column_names_row():
    df = _frame(oh_p50=["8.9", "high", "9.0"])
    with pytest.raises(DataError, match=r"'oh_p50' is not numeric \(row 1: 'high'\)"):
        select_target(df, "metallicity", source="c.csv")


def test_no_row_left_is_an_error_with_the_counts():
    with pytest.raises(DataError, match="no galaxy passes.*oh_p50 > 0: removed 3"):
        select_target(_frame(oh_p50=[-1.0, 0.0, -9.0]), "metallicity", source="c.csv")


def test_zero_padded_numeric_objids_stay_text_and_find_their_images(tmp_path):
    from PIL import Image

    from sfnet.config import DataConfig
    from sfnet.data.dataset import load_dataset

    (tmp_path / "images").mkdir()
    (tmp_path / "galaxies.csv").write_text("objID,oh_p50\n000123,8.9\n000124,9.0\n000200,8.8\n")
    for o in ("000123", "000124", "000200"):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{o}.png")
    df = read_catalog(tmp_path / "galaxies.csv")
    assert df["objID"].tolist() == ["000123", "000124", "000200"]
    data = load_dataset(DataConfig(path=str(tmp_path), crop=8))
    assert data.objid.tolist() == ["000123", "000124", "000200"]


def test_spaces_around_header_names_are_stripped(tmp_path):
    path = tmp_path / "galaxies.csv"
    path.write_text(" objID , oh_p50 ,lgm_tot_p50\n1,8.9,10\n2,9.0,10\n")
    df = read_catalog(path)
    assert list(df.columns) == ["objID", "oh_p50", "lgm_tot_p50"]
    assert select_target(df, "metallicity").y.ravel().tolist() == pytest.approx([8.9, 9.0])


def test_corrupt_fits_catalog_is_one_short_message(tmp_path):
    path = tmp_path / "galaxies.fits"
    path.write_bytes(b"garbage" * 100)  # astropy would list its 40 table formats
    with pytest.raises(DataError) as err:
        read_catalog(path)
    msg = str(err.value)
    assert str(path) in msg and "FITS" in msg
    assert len(msg) < 300 and msg.count("\n") == 0, msg


def test_objids_keep_the_spelling_of_the_catalog(tmp_path):
    from sfnet.data.catalog import read_catalog

    path = tmp_path / "galaxies.csv"
    path.write_text("objID,oh_p50\n+5,8.7\n-0,8.8\n7,9.0\n")
    ids = read_catalog(path)["objID"].tolist()
    assert ids == ["+5", "-0", "7"]
    # "nan" is named as written (not as an empty objID)
    path.write_text("objID,oh_p50\n5,8.7\nnan,8.8\n")
    with pytest.raises(DataError, match="'nan'"):
        read_catalog(path)
    # canonical integers still become int64
    path.write_text("objID,oh_p50\n5,8.7\n-3,8.8\n")
    assert read_catalog(path)["objID"].dtype == "int64"


def test_a_target_beyond_float32_is_out_of_range_with_its_row(tmp_path):
    from sfnet.data.catalog import read_catalog, select_target

    path = tmp_path / "galaxies.csv"
    path.write_text("objID,oh_p50\n11,8.7\n12,1e300\n13,8.9\n")
    with pytest.raises(DataError) as e:
        select_target(read_catalog(path), "metallicity", str(path))
    msg = str(e.value)
    assert "row 1 (objID 12): oh_p50 = 1e+300 is out of range" in msg
    assert "non-finite" not in msg
