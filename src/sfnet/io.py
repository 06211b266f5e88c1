"""Safe file writes: atomic writes (a reader never sees a half-written file under its final
name), the one guard against writing over a file the user did not ask to replace
(:func:`check_output_file`), and the one way an objID becomes a file name
(:func:`objid_filename`)."""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sfnet.errors import UserError


class OutputExistsError(UserError):
    """An output file exists (and ``--overwrite`` was not given) or is an input of the command."""


class UnsafeNameError(UserError):
    """An objID that cannot be used as a file name (it would be a path, or is not a name)."""


#: Longest objID (UTF-8 bytes) used as a file name: room for ``.NAME.PID-RAND.tmp`` within the
#: usual 255-byte file name limit.
MAX_OBJID_NAME = 200
_TMP_SUFFIX = ".tmp"


def objid_filename(objid: object, suffix: str = "") -> str:
    """The file name ``<objID><suffix>`` of a galaxy; refuses an objID that is not a plain name.

    An objID is data, never a path: only letters and digits (any script), ``_``, ``-``, ``+``
    and ``.`` are accepted, not a leading ``.`` (``..``, hidden files), at most
    :data:`MAX_OBJID_NAME` bytes. SDSS objIDs (integers) always pass unchanged.

    Raises:
        UnsafeNameError: naming the objID (``repr``) and why.
    """
    text = str(objid)
    why = None
    if not text:
        why = "it is empty"
    elif text.startswith("."):
        why = "it starts with '.'"
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_OBJID_NAME:
        why = f"it is longer than {MAX_OBJID_NAME} bytes"
    else:
        bad = sorted({c for c in text if not (c.isalnum() or c in "_-+.")})
        if bad:
            why = "it contains " + " ".join(repr(c) for c in bad[:5])
    if why is not None:
        shown = repr(text if len(text) <= 60 else text[:57] + "...")
        raise UnsafeNameError(
            f"objID {shown} cannot be a file name ({why}); objIDs used as file names may hold "
            "only letters, digits, '_', '-', '+' and '.' (not leading)"
        )
    return text + suffix


def check_output_file(
    path: Path | str, *, overwrite: bool = False, inputs: Iterable[Path | str | None] = ()
) -> Path:
    """Refuse, before any work, to write the user-named file ``path`` over something.

    Refused always: a folder at ``path``; ``path`` being one of ``inputs`` (the files and
    folders the same command reads) or inside an input folder. Refused unless ``overwrite``: an
    existing file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputExistsError: naming the file and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path}: is a folder; give the path of a file to write")
    target = path.resolve()
    for src in inputs:
        if src is None or str(src) == "":
            continue
        s = Path(src).resolve()
        if target == s or (s.is_dir() and s in target.parents and _is_data_file(target, s)):
            raise OutputExistsError(
                f"{path}: is an input of this command ({src}); write the output elsewhere"
            )
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(
            f"{path}: exists; use --overwrite to replace it, or choose another output file"
        )
    return path


def _is_data_file(target: Path, folder: Path) -> bool:
    """True when ``target`` is part of what a dataset folder ``folder`` holds and a command
    reads: its catalog (``galaxies.*``), ``images/`` or ``packed/``."""
    rel = target.relative_to(folder).parts
    return rel[0] in ("images", "packed") or rel[0].startswith("galaxies.")


def atomic_write_target(name: str) -> str:
    """The file name a temporary file of :func:`atomic_write` (``.NAME.PID-RAND.tmp``, left by
    a killed write) was for, or ``""`` when ``name`` is not one."""
    if not (name.startswith(".") and name.endswith(_TMP_SUFFIX)):
        return ""
    return name[1:].rsplit(".", 2)[0]


def foreign_entries(folder: Path, ours: frozenset[str]) -> list[str]:
    """Names of the entries of ``folder`` sfnet did not write there, sorted: neither one of
    ``ours`` nor the temporary file of an atomic write of one (:func:`atomic_write_target`)."""
    names = (p.name for p in Path(folder).iterdir())
    return sorted(n for n in names if n not in ours and atomic_write_target(n) not in ours)


def atomic_write(path: Path, write: Callable[[Path], None], *, clean_stale: bool = True) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The temporary file ``.NAME.PID-RAND.tmp`` lives in the same folder so the rename is atomic;
    it is removed if ``write`` raises. Temporary files of the same name left by a killed
    process (its PID no longer alive) are removed first (``clean_stale``).

    Raises:
        OSError: naming ``path``; a full disk is ``ENOSPC`` even where the writer (e.g.
            ``torch.save``) reports it as something else.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if clean_stale:
        remove_stale_temps(path)
    tmp_path = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}"
    try:
        tmp_path.touch(mode=0o666, exist_ok=False)
        write(tmp_path)
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as e:
        full = _disk_full(path.parent)
        tmp_path.unlink(missing_ok=True)
        if full or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _disk_full(folder: Path) -> bool:
    """True when the file system of ``folder`` has (almost) no space left for us."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return st.f_bavail * st.f_frsize < (64 << 10)


def remove_stale_temps(path: Path) -> int:
    """Remove ``.NAME.PID-RAND.tmp`` temporary files of ``path`` whose writing process is gone
    (killed mid-write); returns how many were removed."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)-[0-9a-f]+{re.escape(_TMP_SUFFIX)}$")
    removed = 0
    try:
        names = [e.name for e in os.scandir(path.parent) if e.name.startswith(f".{path.name}.")]
    except OSError:
        return 0
    for name in names:
        m = pattern.match(name)
        if m and not _pid_alive(int(m.group(1))):
            (path.parent / name).unlink(missing_ok=True)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def atomic_write_bytes(path: Path, data: bytes, *, clean_stale: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, _write, clean_stale=clean_stale)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (flushed and fsynced). NaN/Infinity are refused (``ValueError``):
    they are not JSON."""
    line = json.dumps(record, allow_nan=False) + "\n"
    try:
        with open(path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.filename is None:  # a full disk reports no file name: name it
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def describe_os_error(e: OSError) -> str:
    """One line for a failed file operation: the path, what went wrong and what to do."""
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
