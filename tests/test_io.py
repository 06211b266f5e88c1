"""sfnet.io: atomic writes that name the file on a full disk and leave no temp file behind a
kill, the one output-file guard, and the one objID -> file name function."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sfnet import io as sio
from sfnet.errors import UserError


def test_a_killed_writer_leaves_no_temp_file_after_the_next_write(tmp_path):
    # a writer killed mid-write (kill -9 during `sfnet analyze`) leaves its temp file; the
    # next write of the same file removes it
    target = tmp_path / "analysis.json"
    code = (
        "import time, sys; from pathlib import Path; from sfnet.io import atomic_write; "
        "atomic_write(Path(sys.argv[1]), lambda tmp: (print('writing', flush=True), "
        "time.sleep(60)))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(sio.__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    leftover = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftover  # the killed writer's temp file
    other = tmp_path / leftover[0].replace("analysis.json", "features.csv")
    other.write_text("")  # a temp file of another name: not this writer's business
    sio.atomic_write_json(target, {"ok": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["analysis.json", other.name])


def test_temp_files_of_a_live_writer_are_kept(tmp_path):
    target = tmp_path / "a.json"
    live = tmp_path / f".a.json.{os.getppid()}-abcd.tmp"  # our parent is alive
    live.write_text("")
    sio.atomic_write_json(target, [1])
    assert live.exists()


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "figures" / "f.png"

    def full(tmp):  # what a write(2) into a full file system raises: no file name
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as e:
        sio.atomic_write(target, full)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert "no space left" in sio.describe_os_error(e.value)
    assert list(target.parent.iterdir()) == []

    # torch.save reports a full disk as RuntimeError("... unexpected pos ..."): said as ENOSPC
    def torch_full(tmp):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0")

    monkeypatch.setattr(sio, "_disk_full", lambda folder: True)
    with pytest.raises(OSError) as e:
        sio.atomic_write(tmp_path / "checkpoint.pt", torch_full)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "checkpoint.pt")
    monkeypatch.setattr(sio, "_disk_full", lambda folder: False)
    with pytest.raises(RuntimeError, match="unexpected pos"):  # not full: a real bug, as it is
        sio.atomic_write(tmp_path / "checkpoint.pt", torch_full)


def test_append_jsonl_names_the_file_on_a_full_disk(tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    class Full:
        def __init__(self, *a, **k):
            self.f = real_open(*a, **k)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, s):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", Full)
    with pytest.raises(OSError) as e:
        sio.append_jsonl(tmp_path / "metrics.jsonl", {"epoch": 1})
    assert e.value.filename == str(tmp_path / "metrics.jsonl")


# ------------------------------------------------------------------ the output-file guard


def test_output_guard(tmp_path):
    data = tmp_path / "D"
    (data / "images").mkdir(parents=True)
    (data / "galaxies.csv").write_text("objID\n1\n")
    # an input of the same command: refused even with overwrite
    for out in (data / "galaxies.csv", data / "galaxies.parquet", data / "images" / "1.png"):
        with pytest.raises(sio.OutputExistsError, match="input of this command"):
            sio.check_output_file(out, overwrite=True, inputs=[data])
    with pytest.raises(sio.OutputExistsError, match="input of this command"):
        sio.check_output_file(data / "galaxies.csv", overwrite=True, inputs=[data / "galaxies.csv"])
    # an existing file: only with overwrite; a folder: never
    other = tmp_path / "preds.csv"
    other.write_text("mine")
    with pytest.raises(sio.OutputExistsError, match="--overwrite"):
        sio.check_output_file(other, inputs=[data])
    assert sio.check_output_file(other, overwrite=True, inputs=[data]) == other
    with pytest.raises(sio.OutputExistsError, match="is a folder"):
        sio.check_output_file(data, overwrite=True)
    assert sio.check_output_file(data / "preds.csv", inputs=[data]) == data / "preds.csv"
    assert other.read_text() == "mine" and (data / "galaxies.csv").read_text() == "objID\n1\n"


# ------------------------------------------------------------------ objIDs are never paths

HOSTILE = [
    "../x",
    "../../x",
    "/abs/x",
    "a/b",
    "a\\b",
    "..",
    ".",
    ".hidden",
    "",
    "a\x00b",
    "9" * 300,
    "$\\undefinedmacro$",
    "ｘ／ｙ",  # fullwidth solidus
    "a\nb",
    "C:x",
]


@pytest.mark.parametrize("objid", HOSTILE)
def test_hostile_objids_are_refused_as_file_names(objid):
    with pytest.raises(UserError, match="cannot be a file name") as e:
        sio.objid_filename(objid, ".png")
    assert "\n" not in str(e.value) and "\x00" not in str(e.value)


def test_plain_objids_are_file_names_unchanged():
    for o in (1237648702973411443, "000123", "+5", "-0", "NGC-1300", "gälaxie_1.2", "ÆØÅ"):
        assert sio.objid_filename(o, ".jpg") == f"{o}.jpg"


def test_atomic_write_target_names_the_file_a_killed_write_was_for(tmp_path):
    def killed(tmp):
        (tmp_path / "seen").write_text(tmp.name)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sio.atomic_write(tmp_path / "model.json", killed)
    assert sio.atomic_write_target((tmp_path / "seen").read_text()) == "model.json"
    assert sio.atomic_write_target("model.json") == ""
