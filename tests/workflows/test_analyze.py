"""The feature analysis of a run folder (sfnet.workflows.analyze, ``sfnet analyze``): its files,
its summary, reuse of stored activations, ground truth against a dense run."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from sfnet.analysis.activations import SparseActivations
from sfnet.analysis.equations import RATIO_NAMES
from sfnet.cli import main
from sfnet.config import ConfigError
from sfnet.errors import RunFolderError
from sfnet.runs import load_run
from sfnet.workflows.analyze import AnalysisOptions, analyze_run, is_analysed
from tests.conftest import REPORT_LINES as LINES
from tests.conftest import REPORT_N as N


@pytest.fixture
def runs(analysed_runs):
    return analysed_runs


def test_analysis_files_and_summary(runs):
    sparse, _, s = runs
    for name in ("activations.npz", "features.csv", "equations.md", "equations.json"):
        assert (sparse / name).stat().st_size > 0, name
    assert s["k"] == 4 and len(s["frequent_features"]) == 4
    assert all(lab.startswith("SL") for lab in s["frequent_features"])
    for lab in s["frequent_features"]:
        assert (sparse / "figures" / f"feature_{lab}.png").stat().st_size > 1000
        assert s["figures"][f"maps_{lab}"] == f"figures/maps_{lab}.png"
        assert (sparse / "figures" / f"maps_{lab}.png").stat().st_size > 1000
    assert (sparse / "figures" / "histograms.png").stat().st_size > 1000
    red = s["redundancy"]
    assert red["threshold"] == 0.9 and red["n_effective"] <= red["n_compared"]
    assert "redundant_with" in pd.read_csv(sparse / "features.csv").columns
    assert (sparse / "figures" / "correlation.png").is_file()
    assert (sparse / "figures" / "equations.png").is_file()
    assert [r["m"] for r in s["variance_explained"]] == list(
        range(1, len(s["variance_explained"]) + 1)
    )
    assert 0 < len(s["variance_explained"]) <= 8
    r2 = [r["r2_prediction_mean"] for r in s["variance_explained"]]
    assert np.all(np.diff(r2) >= -1e-9)  # nested least-squares fits never get worse
    rm = s["rmse"]
    assert set(rm["model"]) == set(LINES) and set(rm["predict_mean"]) == set(LINES)
    assert rm["oracle"]["available"] in (True, False)
    assert json.loads((sparse / "analysis.json").read_text())["model_sha"] == s["model_sha"]


def test_activations_are_the_validation_split_and_equations_reproduce_them(runs):
    sparse, _, _ = runs
    run = load_run(sparse)
    acts = SparseActivations.load(sparse / "activations.npz")
    np.testing.assert_array_equal(acts.rows, run.split(N)[1])
    assert acts.split == "val" and acts.k == 4 and acts.indices.dtype == np.int16
    eqs = json.loads((sparse / "equations.json").read_text())
    fmax = {f["feature"]: f["max_activation"] for f in eqs["features"]}
    names = [e["name"] for e in eqs["equations"]]
    assert names == LINES + list(RATIO_NAMES)
    for t, e in enumerate(eqs["equations"][:4]):
        pred = np.full(acts.n, e["intercept"])
        for term in e["terms"]:
            a = np.where(acts.indices == term["feature"], acts.values, 0).sum(1)
            pred += term["coefficient"] * a / fmax[term["feature"]]
        np.testing.assert_allclose(pred, acts.predictions[:, t], atol=1e-4)


def test_groundtruth_sfnet_and_dense(runs):
    sparse, _, s = runs
    gt = json.loads((sparse / "groundtruth.json").read_text())
    assert [u["unit"] for u in gt["sfnet"]["units"]] == s["frequent_features"]
    assert {u["best_factor"] for u in gt["sfnet"]["units"]} <= {"true_line", "true_noise"}
    assert [u["unit"] for u in gt["dense"]["pca"]["units"]] == ["PC1", "PC2", "PC3", "PC4"]
    assert len(gt["dense"]["neurons"]["units"]) == 4
    assert set(s["groundtruth"]) == {"sfnet", "dense_pca", "dense_neurons"}
    table = (sparse / "features.csv").read_text()
    assert "true_correlates" in table.splitlines()[0] and "w_log_nii_ha" in table


def test_reuses_activations_and_refuses_dense(runs, capsys):
    sparse, dense, _ = runs
    before = (sparse / "activations.npz").stat().st_mtime_ns
    assert main(["report", str(sparse), "--no-progress"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(sparse / "report.html")
    assert (sparse / "activations.npz").stat().st_mtime_ns == before
    with pytest.raises(RunFolderError, match="dense"):
        analyze_run(dense)
    assert main(["analyze", str(dense), "--no-progress"]) == 2


def test_analyze_all_galaxies(runs, tmp_path, capsys):
    sparse, _, _ = runs
    copy = tmp_path / "run"
    shutil.copytree(sparse, copy)
    cfg = json.loads((copy / "analysis.json").read_text())
    assert cfg["split"] == "val"
    assert main(["analyze", str(copy), "--all", "--n-features", "1", "--no-progress"]) == 0
    assert "frequent features" in capsys.readouterr().out
    s = json.loads((copy / "analysis.json").read_text())
    assert s["split"] == "all" and s["n_analysed"] == N
    assert s["rmse"]["n_val"] == len(load_run(copy).split(N)[1])
    assert len(s["frequent_features"]) == 1


def test_is_analysed_follows_the_weights(runs, tmp_path):
    sparse, _, _ = runs
    assert is_analysed(sparse)
    copy = tmp_path / "run"
    shutil.copytree(sparse, copy)
    assert is_analysed(copy)
    (copy / "model.safetensors").write_bytes(b"other weights")
    assert not is_analysed(copy)  # analysis.json names the old weights' hash


def test_pre_topk_stats_follow_the_pooled_features(runs, tmp_path):
    """--stats pre-topk: f_activated counts non-zero pooled features; the report says so."""
    from sfnet.outputs.report import render_report
    from sfnet.predict import pooled_features

    sparse, _, post = runs
    run_dir = tmp_path / "pre"
    shutil.copytree(sparse, run_dir)
    s = analyze_run(run_dir, AnalysisOptions(stats="pre-topk"))
    assert s["stats"] == "pre-topk" and post["stats"] == "post-topk"
    run = load_run(run_dir)
    data = run.data()
    acts = SparseActivations.load(run_dir / "activations.npz")
    pooled = pooled_features(run, data.images, acts.rows)
    freq = (pooled > 0).mean(axis=0)
    expected = [f"SL{f}" for f in np.lexsort((np.arange(len(freq)), -freq))[:4]]
    assert s["frequent_features"] == expected
    html = render_report(run_dir)
    assert "before TopK" in html
    assert "before TopK" not in render_report(sparse)


def test_library_options_are_checked_like_the_cli_options(trained_toy_run):
    # Run.report(**options) and analyze_run(...) take AnalysisOptions without argparse's checks
    before = sorted(p.name for p in trained_toy_run.iterdir())
    for bad, field in (
        (AnalysisOptions(stats="pre"), "stats"),
        (AnalysisOptions(batch_size=0), "batch_size"),
    ):
        with pytest.raises(ConfigError, match=f"analysis.{field}"):
            analyze_run(trained_toy_run, bad)
    assert sorted(p.name for p in trained_toy_run.iterdir()) == before  # nothing written
