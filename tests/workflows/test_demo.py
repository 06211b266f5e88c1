"""End to end on a tiny synthetic survey: the CLI (synth -> train -> predict -> analyze) and the
demo driver (cache reuse, scores, summary)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from sfnet.cli import main
from sfnet.workflows.demo import DemoConfig, run_demo


def test_cli_synth_train_predict_analyze(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert main(["synth", "--n", "48", "--size", "32", "--out", str(data), "--workers", "1"]) == 0
    assert "wrote 48 galaxies" in capsys.readouterr().out
    assert (data / "galaxies.csv").is_file() and len(list((data / "images").iterdir())) == 48

    # a user mistake is one clear line, exit 2
    assert main(["synth", "--n", "4", "--size", "32", "--out", str(data)]) == 2
    assert "already exists" in capsys.readouterr().err

    grid = tmp_path / "grid.png"
    args = ["synth", "--preview", "true_bulge_frac", "--data", str(data), "--out", str(grid)]
    assert main(args) == 0
    assert grid.stat().st_size > 1000

    run = tmp_path / "runs" / "lines"
    args = ["train", "--data", str(data), "--target", "bpt_lines", "--k", "4", "--crop", "32"]
    args += ["--epochs", "1", "--batch-size", "16", "--out", str(run), "--no-progress"]
    assert main(args) == 0
    assert (run / "model.safetensors").is_file()

    pred = tmp_path / "pred.csv"
    assert main(["predict", str(run), "--out", str(pred)]) == 0
    p = pd.read_csv(pred)
    assert len(p) > 10 and p.filter(like="pred_log_h_alpha").notna().all().all()

    assert main(["analyze", str(run), "--no-progress"]) == 0
    assert (run / "groundtruth.json").is_file()  # the synthetic truth reached the analysis


def test_demo_driver_caches_the_survey(tmp_path: Path, caplog) -> None:
    cfg = DemoConfig(root=tmp_path / "demo", n=60, size=32, crop=32, epochs=1, batch_size=16)
    cfg.workers = 1
    with caplog.at_level(logging.INFO, logger="sfnet.workflows.demo"):
        res = run_demo(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "sfnet.workflows.demo"]
    assert "synth" in res.seconds
    assert [s.name for s in res.scores] == [
        "log_nii_6584_flux",
        "log_h_alpha_flux",
        "log_oiii_5007_flux",
        "log_h_beta_flux",
        "oh_p50",
    ]
    for s in res.scores:
        assert s.model > 0 and s.mean > 0 and s.oracle > 0
    summary = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert len(summary["scores"]) == 5 and summary["seconds"]["total"] > 0
    assert any("oracle" in line for line in lines)
    assert [p.name for p in res.run_dirs] == ["bpt_lines-k4", "metallicity-k4"]
    # the demo ends with the feature atlas of each run, and says where it is
    assert [p.parent for p in res.reports] == res.run_dirs
    for report in res.reports:
        html = report.read_text()
        assert report.name == "report.html" and "<img" in html
    assert any(line.startswith("feature atlas") and str(res.reports[0]) in line for line in lines)
    assert summary["reports"] == [str(p) for p in res.reports]

    # second call: survey and finished runs are reused, same numbers
    again = run_demo(cfg)
    assert "synth" not in again.seconds
    assert [s.model for s in again.scores] == pytest.approx([s.model for s in res.scores])
