import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sfnet.cli import main
from sfnet.config import TARGETS, ConfigError
from sfnet.errors import RunFolderError
from sfnet.workflows.compare import (
    CompareConfig,
    mean_se,
    plan_runs,
    rmse_table_markdown,
    run_comparison,
    sweep_table,
    torchrun_command,
)


def _tiny_survey(folder, n=64, size=32, seed=0):
    """A dataset folder whose images carry the targets (brightness ~ mass, colour ~ AGN)."""
    rng = np.random.default_rng(seed)
    mass = rng.normal(10.2, 0.5, n)
    agn = rng.random(n) < 0.35
    oh = 8.9 + 0.3 * (mass - 10.2) + 0.05 * rng.normal(size=n)
    ha = 10 ** rng.uniform(1.5, 2.5, n)
    n2 = ha * 10 ** np.where(agn, 0.1, -0.5)
    hb = ha / 2.86
    o3 = hb * 10 ** np.where(agn, 0.6, -0.3)
    cat = pd.DataFrame(
        {
            "objID": 1237648720693755000 + np.arange(n, dtype=np.int64),
            "oh_p50": oh,
            "lgm_tot_p50": mass,
            "sfr_tot_p50": rng.normal(0, 0.3, n),
        }
    )
    for name, f in (("nii_6584", n2), ("h_alpha", ha), ("oiii_5007", o3), ("h_beta", hb)):
        cat[f"{name}_flux"] = f
        cat[f"{name}_flux_err"] = f / 20
    (folder / "images").mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size] - size / 2
    r2 = xx**2 + yy**2
    for i, oid in enumerate(cat["objID"]):
        prof = np.exp(-r2 / (2 * (3 + 2 * (mass[i] - 9.5)) ** 2))
        rgb = np.stack(
            [prof * (1.0 if agn[i] else 0.4), prof * 0.7, prof * (0.3 if agn[i] else 1.0)]
        )
        img = np.clip(255 * rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / "images" / f"{oid}.png")
    cat.to_csv(folder / "galaxies.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    return _tiny_survey(tmp_path_factory.mktemp("survey"))


@pytest.fixture
def one_thread():
    """Tiny convolutions: one torch thread is faster, and far faster on a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_quick_comparison_end_to_end_and_resume(survey, tmp_path, monkeypatch, one_thread, capsys):
    out = tmp_path / "cmp"
    feats = tmp_path / "user_features.npz"
    cat = pd.read_csv(survey / "galaxies.csv")
    rng = np.random.default_rng(3)
    np.savez(feats, objID=cat["objID"].to_numpy(), features=rng.normal(size=(len(cat), 5)))
    argv = [
        "compare",
        str(survey),
        "--out",
        str(out),
        "--quick",
        "--epochs",
        "1",
        "--crop",
        "32",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--features",
        str(feats),
        "--probe-trees",
        "20",
        "--sae-steps",
        "40",
        "--atlas",  # off with --quick: asked for here
        "--no-progress",
    ]
    # the feature atlases' figures (tested in tests/workflows/test_sparsity.py and
    # tests/outputs/test_report.py) cost ~10 s of CPU per page: record what compare asks for
    atlases = []

    def atlas_page(folder, *args, **kwargs):
        atlases.append((Path(folder).relative_to(out).as_posix(), args, kwargs))
        (Path(folder) / "report.html").write_text("page")

    import sfnet.workflows.analyze
    import sfnet.workflows.sparsity

    monkeypatch.setattr(sfnet.workflows.analyze, "write_report", atlas_page)
    monkeypatch.setattr(sfnet.workflows.sparsity, "sae_feature_pages", atlas_page)
    assert main(argv) == 0
    printed = capsys.readouterr().out

    cfg = CompareConfig.load(out / "compare.toml")
    assert cfg.quick and cfg.ks == (2, 4) and cfg.repeats == 1 and cfg.epochs == 1
    assert cfg.probe_trees == 20 and cfg.sae_steps == 40 and cfg.atlas
    table = pd.read_csv(out / "table_rmse.csv")
    assert set(table["target"]) == {"metallicity", "bpt_lines"}
    assert sorted(table["k"].unique()) == [2, 4]
    assert np.isfinite(table[["sfnet_mean", "pca_rmse", "sae_mean"]]).all().all()
    assert (out / "rmse_vs_k.png").stat().st_size > 1000
    md = (out / "table_rmse.md").read_text()
    assert md.splitlines()[0].startswith(
        "| k | Metallicity SFNet | Metallicity PCA | Metallicity SAE | Spectral lines SFNet"
    )
    # SAE-k (issue 22): one saved sparse autoencoder per target, k and repeat, on the dense
    # features; its codes have k active latents and predict better than the mean
    from sfnet.analysis.sae import SparseAutoencoder

    sae_runs = pd.read_csv(out / "sae_runs.csv")
    assert len(sae_runs) == 4 and set(sae_runs["k"]) == {2, 4}
    assert (sae_runs["n_latents"] == 4 * 512).all()
    sae = SparseAutoencoder.load(out / "sae" / "metallicity_k2_r0")
    assert sae.k == 2 and sae.d == 512 and sae.config.steps == 40
    z = sae_runs[sae_runs["target"] == "metallicity"]
    assert (z["sae_rmse"] < 1.5 * cat["oh_p50"].std()).all()
    # at the analysed k (4) of each group, the SFNet's feature atlas and the SAE's latent
    # atlas (its 4 most frequent latents, with spatial maps), linked from atlas.html
    pages = {a[0]: a for a in atlases}
    assert set(pages) == {f"{d}/{t}_k4_r0" for d in ("runs", "sae") for t in TARGETS}
    sae4, codes, _, n_pages = pages["sae/metallicity_k4_r0"][1]
    assert sae4.k == 4 and codes.shape[1] == 2048 and n_pages == 4
    assert ((codes > 0).sum(axis=1) <= 4).all()
    assert pages["sae/metallicity_k4_r0"][2]["maps"] is True
    atlas = (out / "atlas.html").read_text()
    for t in ("metallicity", "bpt_lines"):
        for rel in (f"runs/{t}_k4_r0/report.html", f"sae/{t}_k4_r0/report.html"):
            assert f'href="{rel}"' in atlas and (out / rel).is_file()
    assert "SAE on dense features (post-hoc TopK)" in atlas  # the interpretability table
    # real-data factors: the catalog columns beyond the target, plus the image measurements
    factors = pd.read_csv(out / "factors.csv").set_index("target")
    assert "oh_p50" not in factors.loc["metallicity", "catalog_columns"].split()
    assert "lgm_tot_p50" in factors.loc["metallicity", "catalog_columns"].split()
    assert "h_alpha_flux" not in factors.loc["bpt_lines", "catalog_columns"].split()
    assert (factors["image_columns"] == "img_gr_colour img_r50_px img_axis_ratio").all()
    assert "interpretability (interpretability.md): Scored against:" in printed
    # interpretability: the same scores for every method and k, against the measured columns
    interp = pd.read_csv(out / "interpretability.csv")
    assert set(interp["method"]) == {"sfnet", "sae", "pca", "neurons"}
    assert set(interp["factors"]) == {"measured"}
    assert len(interp) == 2 * 2 * 4  # targets x ks x methods
    for col in ("best_abs_rho", "margin", "disentanglement", "completeness", "mig"):
        assert interp[col].between(0, 1).all(), col
    assert "SAE on dense features" in (out / "interpretability.md").read_text()
    var = pd.read_csv(out / "pca_variance.csv")
    assert (var.groupby("target")["cumulative"].max() <= 1 + 1e-9).all()
    agn = pd.read_csv(out / "agn.csv")
    assert list(agn["features"]) == ["top", "all_active"]
    # both classifiers score the same validation galaxies, at least as well as "never AGN";
    # "all active" starts with the "top" features, most frequent first
    assert agn["agn_fraction_val"].nunique() == 1 and 0 < agn.loc[0, "agn_fraction_val"] < 1
    # "never AGN" is a strong baseline on ~13 toy validation galaxies: a working classifier may
    # lose one of them to it (seen with the stable recipe); an inverted or label-shuffled one
    # loses many more
    assert (agn["accuracy"] >= 1 - agn["agn_fraction_val"] - 0.1).all()
    assert agn.loc[1, "features_used"].startswith(agn.loc[0, "features_used"])
    assert agn.loc[1, "n_features"] >= agn.loc[0, "n_features"]
    assert agn.loc[0, "n_features"] <= 4
    probes = pd.read_csv(out / "probes.csv")
    assert set(probes["model"]) == {"linear", "xgboost"}
    assert set(probes["fit_on"]) == {"train", "val"}
    assert probes["source"].str.startswith("file user_features").any()
    pf = pd.read_csv(out / "probe_sfnet_features.csv")
    assert not pf.empty and set(pf["target"]) <= {"metallicity", "bpt_lines"}
    assert pf["label"].str.match(r"^(Z|SL)\d+$").all()
    sweep = pd.read_csv(out / "sweep_runs.csv")
    assert len(sweep) == 6  # per target: dense + k in (2, 4)
    assert "comparison.md" in {p.name for p in out.iterdir()}

    # a second call reuses every finished run instead of retraining
    import importlib

    def no_training(*a, **k):
        raise AssertionError("finished runs must not be retrained")

    monkeypatch.setattr(importlib.import_module("sfnet.train"), "fit", no_training)
    res = run_comparison(out, cfg)
    assert res.trained == [] and len(res.reused) == 6
    assert res.sae["reused"].all()  # the saved SAEs too
    pd.testing.assert_frame_equal(
        res.table.reset_index(drop=True), table, check_dtype=False, atol=1e-5
    )

    # asking for different settings in the same folder is refused, naming the run
    cfg2 = CompareConfig.create(
        quick=True, path=str(survey), epochs=2, crop=32, device="cpu", batch_size=32
    )
    with pytest.raises(RunFolderError, match="metallicity_dense"):
        run_comparison(out, cfg2)


def test_torchrun_launcher_command(tmp_path):
    cmd = torchrun_command(tmp_path / "c.toml", tmp_path / "run", nproc=2)
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=2" in cmd
    i = cmd.index("-m", 3)
    assert cmd[i + 1 : i + 3] == ["sfnet", "train"]
    assert cmd[cmd.index("--config") + 1] == str(tmp_path / "c.toml")
    assert cmd[cmd.index("--out") + 1] == str(tmp_path / "run")
    resumed = torchrun_command(tmp_path / "c.toml", tmp_path / "run", nproc=2, resume=True)
    assert resumed[resumed.index("--resume") + 1] == str(tmp_path / "run")
    assert "--config" not in resumed
    # what follows "-m sfnet" is a valid `sfnet train` command line
    from sfnet.cli import build_parser

    for c in (cmd, resumed):
        args = build_parser().parse_args(c[c.index("sfnet", 3) + 1 :])
        assert args.command == "train" and args.progress is False
    assert (
        build_parser().parse_args(resumed[resumed.index("sfnet", 3) + 1 :]).resume
        == tmp_path / "run"
    )


def test_torchrun_launcher_runs_each_training(tmp_path):
    from sfnet.workflows.compare import ensure_run

    cfg = CompareConfig.create(
        path="x.npz",
        launcher="torchrun",
        nproc=3,
        ks=(2,),
        repeats=1,
        targets=("metallicity",),
        crop=32,
    )
    spec = plan_runs(cfg)[1]
    seen = []

    def runner(cmd):
        seen.append(cmd)
        return 1  # the training failed

    with pytest.raises(RunFolderError, match="torchrun training failed"):
        ensure_run(spec, tmp_path, cfg, runner=runner)
    assert "--nproc_per_node=3" in seen[0]
    saved = tmp_path / "configs" / f"{spec.name}.toml"
    from sfnet.config import RunConfig

    assert RunConfig.load(saved).model.k == 2


def test_config_quick_plan_and_roundtrip(tmp_path):
    cfg = CompareConfig.create(quick=True, path="d", repeats=2)
    assert cfg.ks == (2, 4) and cfg.repeats == 2 and cfg.epochs == 2  # explicit wins
    full = CompareConfig.create(path="d")
    specs = plan_runs(full)
    assert len(specs) == 2 * (1 + 5 * 3)
    seeds = {s.config.train.seed for s in specs if s.k == 3}
    assert seeds == {0, 1, 2}
    assert {s.config.data.split_seed for s in specs} == {0}  # same split for every run
    full.save(tmp_path / "c.toml")
    assert CompareConfig.load(tmp_path / "c.toml") == full
    with pytest.raises(ConfigError, match="ks"):
        CompareConfig.create(path="d", ks=(2, 2))
    with pytest.raises(ConfigError, match="launcher"):
        CompareConfig.create(path="d", launcher="mpirun")
    with pytest.raises(ConfigError, match="no data"):
        CompareConfig.create()


def test_sweep_table_and_markdown():
    sweep = pd.DataFrame(
        {
            "target": ["metallicity"] * 3 + ["bpt_lines"],
            "k": [2, 2, 2, 2],
            "repeat": [0, 1, 2, 0],
            "group_rmse": [0.1, 0.2, 0.3, 0.25],
        }
    )
    pca = pd.DataFrame(
        {"target": ["metallicity", "bpt_lines"], "k": [2, 2], "pca_rmse": [0.5, 0.4]}
    )
    t = sweep_table(sweep, pca)
    m = t[t["target"] == "metallicity"].iloc[0]
    assert m["sfnet_mean"] == pytest.approx(0.2)
    assert m["sfnet_se"] == pytest.approx(0.1 / np.sqrt(3))
    md = rmse_table_markdown(t)
    assert "| 2 | 0.2000 ± 0.0577 | 0.5000 | 0.2500 | 0.4000 |" in md
    assert np.isnan(mean_se([1.0])[1])


def test_ensure_run_continues_unfinished_folders(tmp_path, one_thread):
    from sfnet.data.dataset import save_npz
    from sfnet.runs import is_finished
    from sfnet.workflows.compare import ensure_run

    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    save_npz(
        data,
        rng.integers(0, 255, (40, 3, 16, 16), dtype=np.uint8),
        rng.normal(8.9, 0.1, (40, 1)),
        np.arange(40),
        ["oh_p50"],
    )
    cfg = CompareConfig.create(
        path=str(data),
        targets=("metallicity",),
        ks=(2,),
        repeats=1,
        epochs=1,
        crop=16,
        batch_size=16,
        device="auto",
    )
    dense, sparse = plan_runs(cfg)
    # killed before its first checkpoint, with other hardware settings: continued, not refused
    run_dir = tmp_path / "runs" / sparse.name
    stored = cfg.run_config(2, 0, "metallicity")
    stored.train.device = "cpu"
    run_dir.mkdir(parents=True)
    stored.save(run_dir / "config.toml")
    path, reused = ensure_run(sparse, tmp_path, cfg)
    assert path == run_dir and not reused and is_finished(run_dir)
    # killed before writing its config: the leftovers are cleared and the run trained
    junk = tmp_path / "runs" / dense.name
    junk.mkdir(parents=True)
    (junk / "partial.tmp").write_text("x")
    path, reused = ensure_run(dense, tmp_path, cfg)
    assert not reused and is_finished(path) and not (path / "partial.tmp").exists()
    assert ensure_run(dense, tmp_path, cfg)[1]  # now finished: reused


def test_dense_cnn_never_shares_its_initial_weights_with_an_sfnet():
    cfg = CompareConfig.create(path="d", repeats=3)
    seeds = {s.config.train.seed for s in plan_runs(cfg) if s.k is not None}
    dense = [s.config.train.seed for s in plan_runs(cfg) if s.k is None]
    assert len(dense) == 2 and not set(dense) & seeds


def test_a_catalog_column_target_gets_its_own_table_column_and_panel_with_unit(tmp_path):
    from sfnet.workflows.compare import plot_rmse_vs_k

    sweep = pd.DataFrame(
        {"target": ["metallicity", "lgm_tot_p50"], "k": [2, 2], "repeat": [0, 0]}
        | {"group_rmse": [0.1, 0.3]}
    )
    pca = pd.DataFrame(
        {"target": ["metallicity", "lgm_tot_p50"], "k": [2, 2], "pca_rmse": [0.2, 0.4]}
    )
    t = sweep_table(sweep, pca)
    md = rmse_table_markdown(t)
    assert (
        "lgm_tot_p50 SFNet | lgm_tot_p50 PCA" in md
        and "| 2 | 0.1000 | 0.2000 | 0.3000 | 0.4000 |" in md
    )
    import matplotlib.figure

    seen = []
    orig = matplotlib.figure.Figure.savefig
    try:
        matplotlib.figure.Figure.savefig = lambda self, *a, **k: (
            seen.append(self),
            orig(self, *a, **k),
        )[1]
        plot_rmse_vs_k(t, tmp_path / "k.png")
    finally:
        matplotlib.figure.Figure.savefig = orig
    labels = [ax.get_ylabel() for ax in seen[0].axes]
    assert labels == ["validation RMSE [dex]", "validation RMSE [dex(solMass)]"]


def test_a_refused_rerun_keeps_compare_toml_and_a_missing_features_file_fails_first(
    tmp_path, monkeypatch
):
    import sfnet.train
    from sfnet.errors import DataError
    from sfnet.workflows.reproduce import run_reproduce

    def no_training(*a, **k):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(sfnet.train, "fit", no_training)
    base = dict(path="d.npz", targets=("metallicity",), ks=(2,), repeats=1, epochs=1, crop=16)
    first = CompareConfig.create(**base)
    first.save(tmp_path / "compare.toml")
    before = (tmp_path / "compare.toml").read_bytes()
    dense = plan_runs(first)[0]
    (tmp_path / "runs" / dense.name).mkdir(parents=True)
    dense.config.save(tmp_path / "runs" / dense.name / "config.toml")
    # a rerun asking for other settings: refused, and compare.toml still describes the runs
    other = CompareConfig.create(**{**base, "epochs": 3})
    with pytest.raises(RunFolderError, match="different settings"):
        run_comparison(tmp_path, other)
    assert (tmp_path / "compare.toml").read_bytes() == before
    # --features that does not exist: refused before any training, nothing written
    missing = CompareConfig.create(**base, features=str(tmp_path / "missing.parquet"))
    with pytest.raises(DataError, match="missing.parquet: no such features file"):
        run_comparison(tmp_path / "new", missing)
    assert not (tmp_path / "new").exists()
    survey = _tiny_survey(tmp_path / "survey", n=8, size=16)
    with pytest.raises(DataError, match="no such features file"):
        run_reproduce(
            tmp_path / "rep", str(survey), features=str(tmp_path / "missing.parquet"), crop=16
        )
    assert not (tmp_path / "rep").exists()


def test_compare_and_reproduce_never_write_into_a_folder_that_is_not_a_comparison(
    tmp_path, monkeypatch, capsys
):
    import sfnet.train

    def no_training(*a, **k):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(sfnet.train, "fit", no_training)
    survey = _tiny_survey(tmp_path / "survey", n=8, size=16)
    mine = tmp_path / "paper"  # a user's folder, with names a comparison also writes
    mine.mkdir()
    (mine / "README.md").write_text("my draft")
    (mine / "agn.csv").write_text("objID,agn\n1,0\n")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    for cmd in (["compare", str(survey)], ["reproduce", str(survey)]):
        assert main([*cmd, "--out", str(mine), "--quick", "--crop", "16"]) == 2
        err = capsys.readouterr().err.strip()
        assert (
            len(err.splitlines()) == 1 and f"{mine}: not empty and not an sfnet comparison" in err
        )
        assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
