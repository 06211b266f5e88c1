"""The ``sfnet`` command turns disk and permission failures into one line naming the path."""

from __future__ import annotations

import errno

import pytest

from sfnet.cli import main


def _fail(code: int):
    def raise_oserror(path, *a, **k):
        raise OSError(code, "simulated", str(path))

    return raise_oserror


@pytest.mark.parametrize(
    ("code", "advice"),
    [(errno.ENOSPC, "free some space"), (errno.EROFS, "writable"), (errno.EACCES, "writable")],
)
def test_train_disk_failure_is_one_line_naming_the_path(toy_npz, tmp_path, monkeypatch, capsys, code, advice):  # fmt: skip
    from sfnet.config import RunConfig

    monkeypatch.setattr(RunConfig, "save", lambda self, path: _fail(code)(path))
    out = tmp_path / "run"
    argv = ["train", "--data", str(toy_npz), "--out", str(out), "--crop", "32", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config.toml" in err and advice in err, err
    assert not out.exists()


def test_config_that_is_a_folder_is_one_line(tmp_path, capsys):
    argv = ["train", "--config", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err and "folder" in err, err


def test_predict_write_failure_is_one_line(tmp_path, monkeypatch, capsys):
    from tests.test_predict import _dataset, _run_folder

    data = _dataset(tmp_path / "D")
    run = _run_folder(tmp_path / "run", data)
    monkeypatch.setattr("sfnet.io.atomic_write", lambda path, write: _fail(errno.ENOSPC)(path))
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sfnet predict: error:") and str(out) in err and "space" in err
