"""The documentation site builds with warnings as errors (what ``make docs`` runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    # make docs executes both notebooks; here only the quickstart (tests/test_examples.py runs
    # the real-sample notebook), and this build is the quickstart's test: it runs once, here
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q"]
    cmd += ["-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")]
    work = tmp_path / "quickstart"
    env = {**os.environ, "SFNET_DOCS_SKIP_RUN": "real_sample", "SFNET_EXAMPLE_DIR": str(work)}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    # (an error in a notebook cell fails the build: nb_execution_raise_on_error)
    assert res.returncode == 0, res.stderr[-3000:]
    # the quickstart trained a run and wrote its predictions where it was told to
    assert list(work.glob("runs/*/model.safetensors"))
    assert (work / "predictions.fits").is_file()
    cli = (tmp_path / "html" / "_generated" / "cli.html").read_text()
    for command in ("sfnet train", "sfnet predict", "--out"):
        assert command in cli
    api = (tmp_path / "html" / "_generated" / "api.html").read_text()
    import sfnet

    for name in sfnet.__all__:
        assert f'id="sfnet.{name}"' in api, name
    assert "Run.predict" in api
    quick = (tmp_path / "html" / "_generated" / "quickstart.html").read_text()
    assert "Predict new galaxies" in quick and "feature_table" in quick
    # the notebook ran at build time: its printed output and inline figures are on the page
    assert "galaxies pass the metallicity cuts; images" in quick.replace("&#39;", "'")
    outputs = quick.split('class="cell_output', 1)[-1]  # what the cells printed, after the first
    assert "dex" in outputs
    assert quick.count('<img alt="../_images/') + quick.count('src="../_images/') >= 2
    assert "pydata-sphinx-theme" in quick or "bd-header" in quick  # the astropy-family theme
    settings = (tmp_path / "html" / "_generated" / "settings.html").read_text()
    from sfnet.config import TrainConfig

    for f in __import__("dataclasses").fields(TrainConfig):  # every field with its help text
        assert f.name in settings, f.name
    assert "passes over the training split" in settings
