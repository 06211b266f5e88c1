"""The paper's public data set (Zenodo record 14712542) as an sfnet dataset folder.

:func:`fetch_paper_data` lists the record's files through Zenodo's records API
(``{api}/records/{record}``), downloads ``galaxies.csv`` and ``images-sdss.tar.gz`` with HTTP
Range resume (a ``.part`` file keeps what arrived), verifies each file's checksum given by the
API (``md5:...``), and unpacks the image archive safely and atomically:

- every member is checked before anything is written: no absolute path, no ``..``, no link,
  device or FIFO (tarfile's ``filter="data"`` is applied on top where Python has it);
- the archive is unpacked into a temporary sibling folder and renamed to ``OUT/images`` only
  when complete, so a half-unpacked folder never carries the final name.

The result, ``OUT/galaxies.csv`` + ``OUT/images/``, is what ``sfnet prepare`` and
``sfnet train`` take as they are. Rerunning skips verified files and a finished unpack.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sfnet.data.download import _RETRY_STATUS
from sfnet.errors import DataError

log = logging.getLogger(__name__)

ZENODO_API = "https://zenodo.org/api"
PAPER_RECORD = "14712542"
CATALOG_FILE = "galaxies.csv"
IMAGES_ARCHIVE = "images-sdss.tar.gz"
PAPER_FILES = (CATALOG_FILE, IMAGES_ARCHIVE)
IMAGES_DIR = "images"
_CHUNK = 1 << 20
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".fits", ".fit", ".gz")


@dataclass
class RecordFile:
    """One file of a Zenodo record: name, download URL, size in bytes, checksum ``algo:hex``."""

    key: str
    url: str
    size: int | None
    checksum: str


def _get_json(url: str, timeout: float) -> dict:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        raise DataError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DataError(f"{url}: cannot reach the records API ({e})") from None
    except ValueError as e:
        raise DataError(f"{url}: not JSON ({e})") from None


def list_record(record: str = PAPER_RECORD, api: str = ZENODO_API, timeout: float = 60.0) -> dict:
    """``{file name: RecordFile}`` of a Zenodo record, from ``{api}/records/{record}``."""
    url = f"{api.rstrip('/')}/records/{record}"
    files = _get_json(url, timeout).get("files")
    if not isinstance(files, list):
        raise DataError(f"{url}: the record lists no files")
    out = {}
    for f in files:
        try:
            key = str(f["key"])
            link = f["links"].get("self") or f["links"]["content"]
            checksum = str(f["checksum"])
        except (KeyError, TypeError, AttributeError):
            raise DataError(f"{url}: malformed file entry {f!r}") from None
        out[key] = RecordFile(key, link, int(f["size"]) if "size" in f else None, checksum)
    return out


def file_checksum(path: Path, algo: str = "md5") -> str:
    """``algo:hexdigest`` of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return f"{algo}:{h.hexdigest()}"


def _matches(path: Path, f: RecordFile) -> bool:
    algo = f.checksum.split(":", 1)[0] if ":" in f.checksum else "md5"
    return file_checksum(path, algo) == f.checksum


def _fetch_range(f: RecordFile, part: Path, timeout: float) -> None:
    """Append the rest of ``f`` to ``part`` (HTTP Range from its size); raise on a broken body."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "sfnet-paper-data"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(f.url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            mode = "ab" if have and r.status == 206 else "wb"  # 200: the server restarted
            with open(part, mode) as out:
                for chunk in iter(lambda: r.read(_CHUNK), b""):
                    out.write(chunk)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the .part is whole
            return
        if e.code in _RETRY_STATUS:
            raise ConnectionError(f"HTTP {e.code} {e.reason}") from None
        raise DataError(f"{f.url}: HTTP {e.code} {e.reason}") from None


def download_file(
    f: RecordFile, dest: Path, retries: int = 5, timeout: float = 60.0, backoff: float = 1.0
) -> bool:
    """Download one record file to ``dest``, resuming ``dest.part``, verified by its checksum.

    Returns:
        False when a verified ``dest`` was already there, True when it was downloaded.

    Raises:
        DataError: the checksum does not match (the partial file is removed), or a permanent
            HTTP error, or still incomplete after ``retries`` retries.
    """
    dest = Path(dest)
    if dest.is_file() and _matches(dest, f):
        return False
    part = dest.with_name(dest.name + ".part")
    last = ""
    for attempt in range(retries + 1):
        try:
            _fetch_range(f, part, timeout)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
            log.warning("%s: attempt %d failed (%s); resuming", f.key, attempt + 1, last)
            time.sleep(backoff * 2**attempt)
            continue
        size = part.stat().st_size if part.exists() else 0
        if f.size is not None and size < f.size:
            last = f"truncated body ({size} of {f.size} bytes)"
            log.warning("%s: %s; resuming", f.key, last)
            continue
        algo = f.checksum.split(":", 1)[0] if ":" in f.checksum else "md5"
        got = file_checksum(part, algo)
        if got != f.checksum:
            part.unlink()
            raise DataError(
                f"{f.key}: checksum mismatch (expected {f.checksum}, got {got}); the partial "
                "file was removed, rerun to download it again"
            )
        os.replace(part, dest)
        return True
    raise DataError(f"{f.key}: download incomplete after {retries + 1} attempts: {last}")


def check_member(m: tarfile.TarInfo, archive: Path) -> None:
    """Refuse a member that could write outside the target folder or is not a plain file/dir.

    Raises:
        DataError: absolute path, ``..`` component, link, device or FIFO; names the member.
    """
    p = PurePosixPath(m.name)
    if p.is_absolute() or m.name.startswith(("/", "\\")) or ".." in p.parts or ":" in p.parts[0]:
        raise DataError(f"{archive}: unsafe member path {m.name!r} (outside the target folder)")
    if not (m.isfile() or m.isdir()):
        kind = "link" if (m.issym() or m.islnk()) else "special file"
        raise DataError(f"{archive}: refusing {kind} member {m.name!r} (only files and folders)")


def _image_root(folder: Path) -> Path:
    """The folder holding the images: ``folder`` itself, or its only subfolder (repeatedly)."""
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
        dirs = [e for e in entries if e.is_dir()]
        files = [e for e in entries if e.is_file() and e.name.lower().endswith(_IMAGE_SUFFIXES)]
        if files or len(dirs) != 1:
            return folder
        folder = dirs[0]


def unpack_images(archive: Path, out: Path) -> Path:
    """Unpack an image archive safely into ``out/images``, atomically.

    Every member is checked (:func:`check_member`) before anything is written; the archive is
    extracted into a temporary sibling and renamed to ``out/images`` when complete.

    Returns:
        ``out/images``.
    """
    out = Path(out)
    final = out / IMAGES_DIR
    if final.is_dir():
        return final
    tmp = out / f".{IMAGES_DIR}.unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                check_member(m, archive)
            tmp.mkdir(parents=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(tmp, members=members)
    except (tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: cannot unpack ({e})") from None
    except DataError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    root = _image_root(tmp)
    os.replace(root, final)
    shutil.rmtree(tmp, ignore_errors=True)
    return final


@dataclass
class PaperDataResult:
    """Where :func:`fetch_paper_data` put the data, and what it downloaded (vs reused)."""

    folder: Path
    downloaded: list[str]
    reused: list[str]


def fetch_paper_data(
    out: Path,
    *,
    record: str = PAPER_RECORD,
    api: str = ZENODO_API,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 1.0,
    log_fn: Callable[[str], None] | None = None,
) -> PaperDataResult:
    """Download and unpack the paper's data set into the dataset folder ``out``.

    Args:
        out: the dataset folder (created): ``galaxies.csv``, ``images/``, and the downloaded
            archive (kept, so a rerun verifies instead of downloading again).
        record: Zenodo record id. api: base URL of the records API (tests use 127.0.0.1).
        retries, timeout, backoff: per-file retry count, socket timeout (s), first delay (s).
        log_fn: called with one line per step (the CLI prints them).
    """
    say = log_fn or (lambda _m: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = list_record(record, api, timeout)
    missing = [k for k in PAPER_FILES if k not in files]
    if missing:
        raise DataError(f"record {record} has no {', '.join(missing)} (has {', '.join(files)})")
    done, reused = [], []
    for key in PAPER_FILES:
        f = files[key]
        say(f"{key}: {f.size or '?'} bytes, {f.checksum}")
        new = download_file(f, out / key, retries=retries, timeout=timeout, backoff=backoff)
        (done if new else reused).append(key)
    say(f"unpacking {IMAGES_ARCHIVE} into {out / IMAGES_DIR}")
    unpack_images(out / IMAGES_ARCHIVE, out)
    return PaperDataResult(out, done, reused)


__all__ = [
    "PAPER_RECORD",
    "RecordFile",
    "ZENODO_API",
    "check_member",
    "download_file",
    "fetch_paper_data",
    "list_record",
    "unpack_images",
]
