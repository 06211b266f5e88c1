"""End to end: a tiny trained run -> sfnet analyze -> report.html rendered in headless Chromium."""

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from sfnet.analysis.equations import RATIO_NAMES
from sfnet.cli import main
from sfnet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from sfnet.data.dataset import save_npz
from sfnet.errors import RunFolderError
from sfnet.features import SparseActivations
from sfnet.report import AnalysisOptions, analyze_run, render_report, write_report
from sfnet.runs import Run, load_run
from sfnet.train import fit

LINES = ["log_nii_6584_flux", "log_h_alpha_flux", "log_oiii_5007_flux", "log_h_beta_flux"]
N = 60


def _with_truth(load):
    """Wrap Run.load_data so the catalog carries synthetic-style true_* factors."""

    def load_data(self):
        data = load(self)
        rng = np.random.default_rng(7)
        data.catalog = data.catalog.assign(
            true_line=data.y[:, 0] * 2.0, true_noise=rng.normal(size=len(data.y))
        )
        return data

    return load_data


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    y = rng.normal(size=(N, 4)).astype(np.float32) + np.array([1.0, 1.5, 0.8, 1.2], np.float32)
    images = rng.integers(0, 256, (N, 3, 32, 32), dtype=np.uint8)
    images[:, 0] = np.clip(images[:, 0] * 0.5 + 60 * (y[:, :1, None] - 0.0), 0, 255)
    save_npz(root / "data.npz", images, y, np.arange(N, dtype=np.int64) + 10**17, LINES)
    data = DataConfig(data=str(root / "data.npz"), target="bpt_lines", crop=32)
    train = TrainConfig(epochs=1, batch_size=16, device="cpu")
    sparse = fit(RunConfig(data, ModelConfig(k=4), train), root / "sparse").run_dir
    # the dense baseline has the same weights minus TopK: reuse them instead of training again
    dense = root / "dense"
    shutil.copytree(sparse, dense)
    meta = json.loads((dense / "model.json").read_text())
    (dense / "model.json").write_text(json.dumps({**meta, "k": None}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Run, "load_data", _with_truth(Run.load_data))
        summary = analyze_run(sparse, AnalysisOptions(dense=str(dense)))
    return sparse, dense, summary


def test_analysis_files_and_summary(runs):
    sparse, _, s = runs
    for name in ("activations.npz", "features.csv", "equations.md", "equations.json"):
        assert (sparse / name).stat().st_size > 0, name
    assert s["k"] == 4 and len(s["frequent_features"]) == 4
    assert all(lab.startswith("SL") for lab in s["frequent_features"])
    for lab in s["frequent_features"]:
        assert (sparse / "figures" / f"feature_{lab}.png").stat().st_size > 1000
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
    assert main(["analyze", str(copy), "--all", "--features", "1", "--no-progress"]) == 0
    assert "frequent features" in capsys.readouterr().out
    s = json.loads((copy / "analysis.json").read_text())
    assert s["split"] == "all" and s["n_analysed"] == N
    assert s["rmse"]["n_val"] == len(load_run(copy).split(N)[1])
    assert len(s["frequent_features"]) == 1


# ------------------------------------------------------------------ headless browser


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed for this test: run 'make chromium'")
    return exe


def render_in_chromium(html_path: Path, png: Path) -> list[str]:
    """Load a page in headless Chromium, screenshot it; return its console messages."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                "--hide-scrollbars",
                "--window-size=1200,1600",
                f"--screenshot={png}",
                html_path.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_console_check_catches_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body>x<script>console.error('boom'); nope();</script></body></html>")
    messages = render_in_chromium(bad, tmp_path / "bad.png")
    assert any("boom" in m for m in messages) and any("nope" in m for m in messages)


def test_report_renders_in_chromium(runs, tmp_path):
    sparse, _, s = runs
    report = write_report(sparse)
    text = report.read_text()
    assert "http://" not in text and "https://" not in text  # opens offline
    assert text.count("data:image/png;base64,") >= len(s["frequent_features"]) + 2
    for lab in s["frequent_features"]:
        assert f'id="{lab}"' in text
    assert render_report(sparse) == text
    png = tmp_path / "shot.png"
    assert render_in_chromium(report, png) == []
    img = mpimg.imread(png)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img[..., :3].std() > 0.05  # header, tables and figures: not a blank page


def test_pre_topk_stats_follow_the_pooled_features(runs, tmp_path):
    """--stats pre-topk: f_activated counts non-zero pooled features; the report says so."""
    from sfnet.predict import pooled_features

    sparse, _, post = runs
    run_dir = tmp_path / "pre"
    shutil.copytree(sparse, run_dir)
    s = analyze_run(run_dir, AnalysisOptions(stats="pre-topk"))
    assert s["stats"] == "pre-topk" and post["stats"] == "post-topk"
    run = load_run(run_dir)
    data = run.load_data()
    acts = SparseActivations.load(run_dir / "activations.npz")
    pooled = pooled_features(run, data.images, acts.rows)
    freq = (pooled > 0).mean(axis=0)
    expected = [f"SL{f}" for f in np.lexsort((np.arange(len(freq)), -freq))[:4]]
    assert s["frequent_features"] == expected
    html = render_report(run_dir)
    assert "before TopK" in html
    assert "before TopK" not in render_report(sparse)
