"""Atomic file writes: a reader never sees a half-written file under its final name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The temporary file lives in the same folder so the rename is atomic; it is removed if
    ``write`` raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, _write)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (flushed and fsynced). NaN/Infinity are refused (``ValueError``):
    they are not JSON."""
    line = json.dumps(record, allow_nan=False) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def describe_os_error(e: OSError) -> str:
    """One line for a failed file operation: the path, what went wrong and what to do."""
    import errno

    path = e.filename if e.filename is not None else "(unknown path)"
    if e.filename2 is not None:
        path = f"{path} -> {e.filename2}"
    code = e.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"{path}: no space left on the device; free some space (or choose another folder) "
            "and run the command again (finished work is kept; an interrupted run resumes)"
        )
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (
            f"{path}: not writable ({e.strerror}); choose a writable folder or fix its permissions"
        )
    if code == errno.EISDIR:
        return f"{path}: is a folder, not a file; give the path of a file"
    if code == errno.ENOTDIR:
        return f"{path}: part of this path is a file, not a folder"
    if code == errno.ENOENT:
        return f"{path}: no such file or folder"
    return f"{path}: {e.strerror or e}"


def replace_dir(new: Path, dest: Path) -> None:
    """Put the folder ``new`` at ``dest``; the previous ``dest`` (if any) is removed.

    On Linux the two are exchanged atomically (``renameat2(RENAME_EXCHANGE)``), so ``dest`` is
    at every moment either the complete old or the complete new folder; elsewhere ``dest`` is
    first renamed aside (``.NAME.old``), then ``new`` renamed onto it.
    """
    new, dest = Path(new), Path(dest)
    if not dest.exists():
        os.rename(new, dest)
        return
    if _exchange(new, dest):
        remove_tree(new)  # now holds the old folder
        return
    old = dest.parent / f".{dest.name}.old"
    remove_tree(old)
    os.rename(dest, old)
    os.rename(new, dest)
    remove_tree(old)


def remove_tree(path: Path) -> None:
    """Remove a folder tree or a file; nothing if it does not exist."""
    import shutil

    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where unsupported."""
    import ctypes
    import sys

    if sys.platform != "linux":
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
