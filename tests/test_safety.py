"""Hostile objIDs through every command that builds a file name from one (``download``,
``explain``): nothing is written outside the output folder, and the error is one line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sfnet.cli import main
from tests.conftest import REPORT_LINES, REPORT_PX
from tests.data.test_download import FakeCutoutServer
from tests.test_io import HOSTILE


def _tree(root: Path) -> set[str]:
    """Every path under ``root`` (relative), for before/after comparisons."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _hostile(tmp_path: Path) -> list[str]:
    """HOSTILE, with the absolute path pointing into the test's own folder."""
    return [str(tmp_path / "abs" / "x") if o == "/abs/x" else o for o in HOSTILE]


def test_download_never_writes_outside_out_for_hostile_objids(tmp_path, capsys):
    with FakeCutoutServer({}) as server:
        for i, objid in enumerate(_hostile(tmp_path)):
            case = tmp_path / f"case{i}"
            (case / "deep" / "out").mkdir(parents=True)
            (tmp_path / "abs").mkdir(exist_ok=True)
            catalog = case / "cat.parquet"  # Parquet keeps any text exactly (NUL, newline)
            pd.DataFrame(
                {"objID": ["1237648704043942100", objid], "ra": [1.0, 2.0], "dec": [0.5] * 2}
            ).to_parquet(catalog)
            before, before_abs = _tree(case), _tree(tmp_path / "abs")
            argv = ["download", "--catalog", str(catalog), "--out", str(case / "deep" / "out")]
            argv += [
                "--url-template",
                server.template,
                "--rate",
                "0",
                "--retries",
                "0",
                "--no-progress",
            ]
            assert main(argv) == 2, objid
            err = _one_line_error(capsys)
            assert "objID" in err
            new = {p for p in _tree(case) - before if not p.startswith(os.path.join("deep", "out"))}
            assert new == set(), (objid, new)
            assert _tree(tmp_path / "abs") == before_abs
    assert server.hits == {}  # refused before any request


@pytest.fixture(scope="module")
def hostile_data(analysed_runs, tmp_path_factory):
    """A dataset (.npz, the analysed run's geometry and targets) whose objIDs are hostile."""
    from sfnet.data.dataset import save_npz

    root = tmp_path_factory.mktemp("hostile")
    ids = [o for o in _hostile(root) if o and "\x00" not in o]  # npz text: no NUL, not empty
    rng = np.random.default_rng(0)
    n = len(ids)
    images = rng.integers(0, 256, (n, 3, REPORT_PX, REPORT_PX), dtype=np.uint8)
    y = rng.normal(size=(n, len(REPORT_LINES))).astype(np.float32)
    save_npz(root / "d" / "hostile.npz", images, y, np.asarray(ids, dtype=str), REPORT_LINES)
    return root, root / "d" / "hostile.npz", ids


def test_explain_never_writes_outside_out_for_hostile_objids(analysed_runs, hostile_data, capsys):
    root, npz, ids = hostile_data
    (root / "abs").mkdir(exist_ok=True)
    out = root / "d" / "deep" / "explain"
    for objid in ids + ["a\x00b"]:
        before = _tree(root)
        argv = ["explain", str(analysed_runs[0]), "--objid", objid, "--data", str(npz)]
        assert main([*argv, "--out", str(out)]) == 2, objid
        err = _one_line_error(capsys)
        assert "objID" in err
        new = {p for p in _tree(root) - before if not p.startswith(os.path.join("d", "deep"))}
        assert new == set(), (objid, new)
        assert not out.exists() or list(out.iterdir()) == []
