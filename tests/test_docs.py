"""The documentation site builds with warnings as errors (what ``make docs`` runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q"]
    cmd += ["-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "html")]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
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
