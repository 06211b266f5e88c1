"""Exclusive folder locks: one sfnet process at a time writes a run (or comparison) folder.

The lock is an ``fcntl.flock`` on a small file beside the folder, ``PARENT/.NAME.lock``
(beside, not inside, so it survives the folder being swapped for a freshly trained one). It is
held for the life of the holder and released by the operating system when the holder exits or
is killed, so a killed run never leaves a stale lock. The holder removes the file when it is
done; after a kill the file stays behind, unlocked and harmless. The holder writes its PID
and command into the file, so a second process can say who holds it. Locks are re-entrant
within one process (``report`` running ``analyze``).

The lock belongs to the folder's *name* in its (resolved) parent, the entry that a staged run
is swapped into, so it is the same lock before and after the swap. A run folder that is a
symbolic link is refused: it would have two names (two locks), and the swap would replace the
link by a real folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sfnet.errors import RunFolderError

#: Locks this process holds: resolved lock-file path -> (open file descriptor, depth).
_HELD: dict[Path, list[int]] = {}


class FolderBusyError(RunFolderError):
    """Another process holds the folder's lock."""


def lock_path(folder: Path) -> Path:
    """The lock file of ``folder``: ``PARENT/.NAME.lock`` (``PARENT`` resolved, ``NAME`` not:
    a symbolic link is not followed)."""
    folder = Path(os.path.abspath(folder))
    return folder.parent.resolve() / f".{folder.name}.lock"


def holder(folder: Path) -> str:
    """What the lock file of ``folder`` says about its holder (``"PID 123 (sfnet train)"``)."""
    try:
        text = lock_path(folder).read_text().strip()
    except OSError:
        return "another process"
    return text or "another process"


@contextlib.contextmanager
def folder_lock(folder: Path, command: str = "", follow_symlink: bool = False) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` inside the ``with`` block.

    Args:
        folder: run or comparison folder (it need not exist yet; its parent is created).
        command: what the holder does, shown to a second process (e.g. ``"sfnet train"``).
        follow_symlink: accept a ``folder`` that is a symbolic link (locked under the link's
            name); for folders that are never swapped (``DATA/packed``).

    Raises:
        FolderBusyError: another process holds it; the message names its PID.
        RunFolderError: ``folder`` is a symbolic link (and not ``follow_symlink``).
    """
    if not follow_symlink and Path(folder).is_symlink():
        raise RunFolderError(
            f"{folder}: is a symbolic link (to {os.path.realpath(folder)}); sfnet locks and "
            "replaces run folders by name - give the real folder instead"
        )
    path = lock_path(folder)
    if path in _HELD:
        _HELD[path][1] += 1
        try:
            yield path
        finally:
            _HELD[path][1] -= 1
        return
    fd = _acquire(path, folder)
    what = command or " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"PID {os.getpid()} ({what}, since {stamp})\n".encode(), 0)
    _HELD[path] = [fd, 1]
    try:
        yield path
    finally:
        _HELD[path][1] -= 1
        if _HELD[path][1] == 0:
            del _HELD[path]
            path.unlink(missing_ok=True)  # still held: nobody can lock this inode meanwhile
            os.close(fd)  # closing the descriptor releases the flock


def _acquire(path: Path, folder: Path) -> int:
    """Open and flock ``path``; retry when a releasing holder unlinked it meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusyError(
                f"{folder}: in use by {holder(folder)}; wait for it to finish or stop it "
                f"(lock file {path})"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # we locked a file its holder had just removed: lock the new one
