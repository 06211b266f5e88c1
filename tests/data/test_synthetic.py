"""The synthetic survey: schema, determinism, the physical relations, cut fractions, preview."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr

from sfnet.config import DataConfig
from sfnet.data import synthetic
from sfnet.data.catalog import read_catalog, select_target
from sfnet.data.dataset import load_dataset
from sfnet.errors import DataError, UserError
from sfnet.physics import BPT_LINES, bpt_ratios, kauffmann_agn

CONTRACT = [
    "objID",
    "ra",
    "dec",
    "z",
    "oh_p50",
    "lgm_tot_p50",
    "sfr_tot_p50",
    "nii_6584_flux",
    "nii_6584_flux_err",
    "h_alpha_flux",
    "h_alpha_flux_err",
    "oiii_5007_flux",
    "oiii_5007_flux_err",
    "h_beta_flux",
    "h_beta_flux_err",
    "bptclass",
]


@pytest.fixture(scope="module")
def big_catalog() -> pd.DataFrame:
    """Catalog only (no images): enough galaxies for the statistical relations."""
    return synthetic.draw_catalog(6000, seed=1)


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    return synthetic.synthesize(out, 16, size=32, seed=3, workers=1)


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_catalog_schema_is_the_real_contract_plus_truth(survey: Path) -> None:
    raw = pd.read_csv(survey / "galaxies.csv", dtype={"objID": str})
    assert list(raw.columns[: len(CONTRACT)]) == CONTRACT
    assert list(raw.columns[len(CONTRACT) :]) == list(synthetic.TRUE_COLUMNS)
    assert all(c.startswith("true_") for c in synthetic.TRUE_COLUMNS)
    assert raw["objID"].str.fullmatch(r"\d{19}").all()
    cat = read_catalog(survey / "galaxies.csv")
    assert cat["objID"].dtype == np.int64
    assert cat["objID"].iloc[0] == synthetic.OBJID_BASE
    imgs = sorted(p.name for p in (survey / "images").iterdir())
    assert imgs == sorted(f"{o}.png" for o in raw["objID"])
    arr = np.asarray(Image.open(survey / "images" / imgs[0]))
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    assert arr.max() > 60  # a galaxy, not an empty sky
    # Physical ranges of the contract columns.
    assert cat["z"].between(0.02, 0.15).all()
    assert cat["lgm_tot_p50"].between(7.5, 12.0).all()
    ok = cat["oh_p50"] > 0
    assert cat.loc[ok, "oh_p50"].between(7.5, 9.6).all()
    assert (cat.loc[~ok, "oh_p50"] == synthetic.MISSING).all()
    for line in BPT_LINES:
        assert (cat[f"{line}_err"] > 0).all()


def test_reads_as_a_dataset(survey: Path) -> None:
    data = load_dataset(DataConfig(path=str(survey), target="bpt_lines", crop=32))
    assert data.images.shape[1:] == (3, 32, 32)
    assert data.images[np.arange(2)].dtype == np.uint8
    assert data.target_names[1] == "log_h_alpha_flux"
    assert "true_logmass" in data.catalog.columns


def test_deterministic_across_worker_counts(survey: Path, tmp_path: Path) -> None:
    again = synthetic.synthesize(tmp_path / "two_workers", 16, size=32, seed=3, workers=2)
    a, b = _tree_digest(survey), _tree_digest(again)
    assert a == b
    other = synthetic.synthesize(tmp_path / "seed4", 16, size=32, seed=4, workers=1)
    c = _tree_digest(other)
    assert a["galaxies.csv"] != c["galaxies.csv"]
    assert sum(a[k] == c[k] for k in a if k.startswith("images")) == 0


def test_galaxy_does_not_depend_on_survey_size() -> None:
    small = synthetic.draw_catalog(5, seed=7)
    large = synthetic.draw_catalog(40, seed=7)
    pd.testing.assert_frame_equal(small, large.iloc[:5])


def test_existing_output_refused_and_failed_run_leaves_nothing(
    survey: Path, tmp_path: Path, monkeypatch
) -> None:
    with pytest.raises(UserError, match="already exists"):
        synthetic.synthesize(survey, 4, size=32, workers=1)

    def boom(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(synthetic, "render_galaxy", boom)
    with pytest.raises(RuntimeError):
        synthetic.synthesize(tmp_path / "broken", 4, size=32, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_edge_on_disks_measure_lower_metallicity_at_fixed_mass(big_catalog) -> None:
    m = select_target(big_catalog, "metallicity").catalog
    fit = np.poly1d(np.polyfit(m["lgm_tot_p50"], m["oh_p50"], 2))
    resid = m["oh_p50"] - fit(m["lgm_tot_p50"])
    disk = m["true_bulge_frac"] < 0.3
    edge = disk & (m["true_cos_inc"] < 0.3)
    face = disk & (m["true_cos_inc"] > 0.7)
    assert edge.sum() > 200 and face.sum() > 200
    diff = resid[edge].mean() - resid[face].mean()
    se = np.hypot(resid[edge].std() / np.sqrt(edge.sum()), resid[face].std() / np.sqrt(face.sum()))
    assert diff < -0.015 and diff < -4 * se


def test_agn_sit_above_the_kauffmann_line(big_catalog) -> None:
    sel = select_target(big_catalog, "bpt_lines")
    x, y = bpt_ratios(sel.y)
    above = kauffmann_agn(x, y)
    agn_dominated = (sel.catalog["true_agn_frac"] > 0.5).to_numpy()
    pure_sf = (sel.catalog["true_agn"] == 0).to_numpy()
    assert agn_dominated.sum() > 100
    assert above[agn_dominated].mean() > 0.9
    assert above[pure_sf].mean() < 0.1
    assert 0.15 < above.mean() < 0.45  # composites + AGN share of the line-selected sample


def test_bluer_disks_at_higher_specific_sfr(big_catalog) -> None:
    rho = spearmanr(big_catalog["true_disk_gr"], big_catalog["true_log_ssfr"])[0]
    assert rho < -0.8
    # ... and it shows in the pixels: disk-dominated, not too edge-on galaxies.
    disks = big_catalog[
        (big_catalog["true_bulge_frac"] < 0.2) & (big_catalog["true_cos_inc"] > 0.4)
    ].iloc[:60]
    params = synthetic._render_params(disks)
    blue = []
    for j, p in enumerate(params):
        img = synthetic.render_galaxy(p, 32, 1, int(disks.index[j])).astype(np.float64)
        core = img[12:20, 12:20].reshape(-1, 3).sum(axis=0)
        blue.append(core[2] / core.sum())
    assert spearmanr(blue, disks["true_log_ssfr"])[0] > 0.5


def test_cut_fractions_and_metallicity_spread(big_catalog) -> None:
    n = len(big_catalog)
    lines = select_target(big_catalog, "bpt_lines").catalog
    metal = select_target(big_catalog, "metallicity").catalog
    assert 0.45 < len(lines) / n < 0.8
    quenched = big_catalog["true_quenched"] == 1
    q_pass = (lines["true_quenched"] == 1).sum() / quenched.sum()
    sf_pass = (lines["true_quenched"] == 0).sum() / (~quenched).sum()
    assert q_pass < 0.4 < sf_pass  # the S/N cut removes weak-line, quenched galaxies
    assert 0.3 < len(metal) / n < len(lines) / n
    assert 0.15 < metal["oh_p50"].std() < 0.25
    # the image-invisible part: metallicity scatter at fixed true factors is not zero
    assert (metal["oh_p50"] - metal["true_oh"] - metal["true_fibre_bias"]).std() > 0.01


def test_preview_grid(survey: Path, tmp_path: Path) -> None:
    out = synthetic.preview(survey, "true_cos_inc", tmp_path / "grid.png", n=8, ncols=4)
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[0] > 150 and img.shape[1] > 300
    assert img.std() > 10  # galaxies on a white page, not blank
    with pytest.raises(DataError, match="true_nope"):
        synthetic.preview(survey, "true_nope", tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_overwrite_replaces_only_a_synthetic_survey(tmp_path: Path) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    with pytest.raises(UserError, match="not a synthetic survey"):
        synthetic.synthesize(out, 4, size=16, seed=0, workers=1, overwrite=True)
    assert (out / "chapter1.tex").read_text() == "precious"


def test_overwrite_never_deletes_what_the_user_saved_in_a_survey(tmp_path: Path) -> None:
    out = tmp_path / "survey"
    synthetic.synthesize(out, 4, size=16, seed=0, workers=1)
    (out / "predictions.parquet").write_bytes(b"mine")  # sfnet predict --out D/...
    (out / ".galaxies.csv.99-ab12.tmp").write_text("killed write")  # sfnet's own leftover
    with pytest.raises(UserError, match=r"holds predictions.parquet, which sfnet did not write"):
        synthetic.synthesize(out, 4, size=16, seed=1, workers=1, overwrite=True)
    assert (out / "predictions.parquet").read_bytes() == b"mine"
    (out / "predictions.parquet").unlink()
    synthetic.synthesize(out, 4, size=16, seed=1, workers=1, overwrite=True)
    assert synthetic.read_synth_info(out)["seed"] == 1


def test_bptclass_uses_mpa_jhu_coding(big_catalog: pd.DataFrame) -> None:
    from sfnet.physics import BPT_LINES, bpt_class

    cls = big_catalog["bptclass"].to_numpy()
    assert set(np.unique(cls)) <= {-1, 1, 2, 3, 4, 5}
    assert (cls == 1).any() and (cls == 4).any() and (cls == 3).any()
    f = big_catalog[list(BPT_LINES)].to_numpy()
    e = big_catalog[[c + "_err" for c in BPT_LINES]].to_numpy()
    assert np.array_equal(cls, bpt_class(f, e))
    # galaxies the survey made AGN sit mostly in the AGN classes, the rest mostly star-forming
    agn = big_catalog["true_agn"].to_numpy() == 1
    strong = np.isin(cls, [1, 3, 4])
    assert np.isin(cls[agn & strong], [3, 4]).mean() > np.isin(cls[~agn & strong], [3, 4]).mean()


def test_preview_never_writes_over_a_file_unless_told(survey: Path, tmp_path: Path, capsys):
    import shutil

    from sfnet.cli import main

    data = tmp_path / "D"
    shutil.copytree(survey, data)
    catalog = (data / "galaxies.csv").read_bytes()
    argv = ["synth", "--preview", "true_cos_inc", "--data", str(data), "--preview-n", "4"]
    # the dataset's own catalog: refused, even with --overwrite
    for extra in ([], ["--overwrite"]):
        assert main([*argv, "--out", str(data / "galaxies.csv"), *extra]) == 2
        assert "input of this command" in capsys.readouterr().err
    assert (data / "galaxies.csv").read_bytes() == catalog
    # someone's file: only with --overwrite
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"my figure")
    assert main([*argv, "--out", str(mine)]) == 2
    assert "--overwrite" in capsys.readouterr().err and mine.read_bytes() == b"my figure"
    assert main([*argv, "--out", str(mine), "--overwrite"]) == 0
    assert mine.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "args, says",
    [
        (["--seed", "-1"], "argument --seed: must be"),
        (["--seed", str(2**64)], "argument --seed: must be"),
        (["--size", "40000"], "GiB of memory"),
        (["--n", "0"], "argument --n: must be"),
    ],
)
def test_synth_refuses_bad_settings_up_front_in_one_line(tmp_path, capsys, args, says):
    from sfnet.cli import main

    out = tmp_path / "s"
    argv = ["synth", "--out", str(out), "--n", "3", "--workers", "1", *args]
    if says.startswith("argument"):  # a value outside its setting's range: refused while parsing
        with pytest.raises(SystemExit) as e:  # (usage, then the one error line, as train's)
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
    else:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_preview_n_must_be_positive(survey: Path, tmp_path: Path, capsys):
    from sfnet.cli import main

    argv = ["synth", "--preview", "true_cos_inc", "--data", str(survey), "--out"]
    with pytest.raises(SystemExit) as e:
        main([*argv, str(tmp_path / "g.png"), "--preview-n", "-5"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --preview-n: must be an integer >= 1, got -5" in err
    assert list(tmp_path.iterdir()) == []


def test_synth_options_are_the_synth_settings(capsys):
    import dataclasses

    from sfnet.cli import build_parser
    from sfnet.cli.synth import synth_config_from_args

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    opts = {s: a for a in sub.choices["synth"]._actions for s in a.option_strings}
    for f in dataclasses.fields(synthetic.SynthConfig):  # the declared help and default
        assert opts["--" + f.name.replace("_", "-")].help.startswith(f.metadata["help"]), f.name
    assert "[default: 6000]" in opts["--n"].help and "[default: 40]" in opts["--preview-n"].help
    args = build_parser().parse_args(["synth", "--out", "o", "--n", "12", "--seed", "3"])
    assert synth_config_from_args(args) == synthetic.SynthConfig(n=12, seed=3)
    with pytest.raises(UserError, match=r"synth\.size must be an integer >= 16"):
        synthetic.check_synth_args(5, 8, 0)  # the library refuses what the CLI does
