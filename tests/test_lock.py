"""One process at a time per run/comparison folder; a killed holder leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sfnet.cli import main

HOLD = textwrap.dedent(
    """
    import sys, time
    from sfnet.lock import folder_lock
    with folder_lock(sys.argv[1], "sfnet train"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def _holder(folder: Path) -> subprocess.Popen:
    """A real second process that takes the folder's lock and keeps it."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def held(tmp_path):
    folder = tmp_path / "run"
    proc = _holder(folder)
    yield folder, proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "{data}", "--out", "{run}", "--overwrite", "--crop", "32"],
        ["train", "--resume", "{run}"],
        ["analyze", "{run}"],
        ["report", "{run}"],
        ["compare", "{data}", "--out", "{run}", "--quick"],
    ],
    ids=["train", "resume", "analyze", "report", "compare"],
)
def test_second_process_is_refused_naming_the_holder(held, toy_npz, argv, capsys):
    folder, proc = held
    (folder).mkdir(exist_ok=True)
    (folder / "config.toml").write_text("[data]\n")  # the holder's run folder
    argv = [a.format(data=toy_npz, run=folder) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"PID {proc.pid}" in err and "sfnet train" in err, err
    assert len(err.strip().splitlines()) == 1
    assert (folder / "config.toml").read_text() == "[data]\n"  # nothing touched


def test_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    from sfnet.lock import folder_lock

    folder = tmp_path / "run"
    proc = _holder(folder)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with folder_lock(folder, "test") as path:  # the OS released the dead holder's lock
        assert f"PID {os.getpid()}" in path.read_text()


def test_lock_is_reentrant_in_one_process_and_released_after(tmp_path):
    from sfnet.lock import folder_lock

    folder = tmp_path / "run"
    with folder_lock(folder), folder_lock(folder):
        pass
    proc = _holder(folder)  # another process can take it once we are done
    proc.kill()
    proc.wait()


def test_lock_file_is_removed_after_a_normal_exit(tmp_path):
    from sfnet.lock import folder_lock, lock_path

    folder = tmp_path / "run"
    with folder_lock(folder):
        assert lock_path(folder).is_file()
    assert list(tmp_path.iterdir()) == []  # nothing beside the run folders


SWAP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sfnet.errors import UserError
    from sfnet.io import replace_dir
    from sfnet.lock import folder_lock
    out = Path(sys.argv[1])
    try:
        with folder_lock(out, "sfnet train"):
            staging = out.parent / f".{out.name}.staging"
            staging.mkdir()
            replace_dir(staging, out)  # what a new run's first checkpoint does
            print("swapped", flush=True)
            time.sleep(60)
    except UserError as e:
        print("refused", e, flush=True)
    """
)


def test_symlinked_run_folder_cannot_bypass_the_lock(tmp_path):
    """Two writers of one run folder through a symbolic link: at most one holds its lock."""
    from sfnet.errors import UserError
    from sfnet.lock import folder_lock

    (tmp_path / "target").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", SWAP, str(link)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        first = proc.stdout.readline().strip()
        holders = [first == "swapped"]
        try:
            with folder_lock(link, "sfnet train"):
                holders.append(True)
        except UserError:
            holders.append(False)
        assert sum(holders) <= 1, "two processes held the lock of one run folder"
        if first.startswith("refused"):
            assert "symbolic link" in first and str(tmp_path / "target") in first
    finally:
        proc.kill()
        proc.wait()


def test_train_into_a_symlinked_out_is_refused_in_one_line(tmp_path, toy_npz, capsys):
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "run"
    link.symlink_to(tmp_path / "elsewhere")
    argv = ["train", "--data", str(toy_npz), "--out", str(link), "--crop", "32"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "symbolic link" in err and "elsewhere" in err
    assert link.is_symlink() and list((tmp_path / "elsewhere").iterdir()) == []
