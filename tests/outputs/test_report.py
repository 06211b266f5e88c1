"""The HTML feature atlas (sfnet.outputs.report): self-contained, one card per frequent feature, and
rendered without console errors in headless Chromium."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from sfnet.outputs.report import render_report
from sfnet.workflows.analyze import write_report


@pytest.fixture
def runs(analysed_runs):
    return analysed_runs


def test_report_is_self_contained_with_a_card_per_frequent_feature(runs):
    sparse, _, s = runs
    report = write_report(sparse)
    text = report.read_text()
    assert report == sparse / "report.html"
    assert "http://" not in text and "https://" not in text  # opens offline
    assert "<script" not in text
    # per feature: BPT + grid and spatial maps; plus equations, correlation, histograms
    assert text.count("data:image/png;base64,") >= 2 * len(s["frequent_features"]) + 3
    assert "Redundant features" in text and "Effective number of distinct features" in text
    for lab in s["frequent_features"]:
        assert f'id="{lab}"' in text
    assert render_report(sparse) == text
    assert "<h2>Training curves</h2>" in text
    assert 'alt="training curves"' in text  # the figure from metrics.jsonl, embedded


def test_render_needs_an_analysis(tmp_path):
    from sfnet.errors import RunFolderError

    with pytest.raises(RunFolderError, match="not analysed yet"):
        render_report(tmp_path)


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
    sparse, _, _ = runs
    report = write_report(sparse)
    png = tmp_path / "shot.png"
    assert render_in_chromium(report, png) == []
    img = mpimg.imread(png)
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    assert img[..., :3].std() > 0.05  # header, tables and figures: not a blank page


def test_a_weight_that_contradicts_its_correlation_is_noted_with_its_redundancy_group():
    import pandas as pd

    from sfnet.outputs.report import sign_disagreements

    eqs = {"equations": [{"name": "oh_p50", "terms": [{"label": "Z312", "coefficient": -0.0235}]}]}
    row = pd.Series({"label": "Z312", "rho_oh_p50": 0.72, "redundant_with": "Z508"})
    (note,) = sign_disagreements(row, eqs)
    assert "-0.0235" in note and "+0.72" in note and 'href="#Z508"' in note
    assert sign_disagreements(row.copy().replace({0.72: -0.72}), eqs) == []  # signs agree
    assert sign_disagreements(pd.Series({"label": "Z312", "rho_oh_p50": 0.05}), eqs) == []


def test_atlas_explains_dead_features_and_stores_each_features_target_correlation(runs):
    import pandas as pd

    sparse, _, s = runs
    text = write_report(sparse).read_text()
    assert f"of {s['d']} (the other" in text and "are dead" in text
    table = pd.read_csv(sparse / "features.csv")
    assert {f"rho_{n}" for n in s["target_names"]} <= set(table.columns)
    assert table[[f"rho_{n}" for n in s["target_names"]]].abs().max().max() <= 1
    assert set(s["units"]) == set(s["target_names"])
    # units flow into the atlas: the RMSE table and every equation's weight
    assert "log_h_alpha_flux [dex(1e-17 erg / (s cm2))]" in text
    assert "coefficient (dex(1e-17 erg / (s cm2)) per A_f)" in text
