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
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sfnet.config import check_fields, setting
from sfnet.data.download import _RETRY_STATUS
from sfnet.errors import DataError

log = logging.getLogger(__name__)

ZENODO_API = "https://zenodo.org/api"
PAPER_RECORD = "14712542"
CATALOG_FILE = "galaxies.csv"
IMAGES_ARCHIVE = "images-sdss.tar.gz"
PAPER_FILES = (CATALOG_FILE, IMAGES_ARCHIVE)
IMAGES_DIR = "images"
#: Written beside ``images/`` once the archive is completely unpacked (names the archive).
UNPACKED_MARKER = ".images.unpacked.json"
_CHUNK = 1 << 20
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".fits", ".fit", ".gz")


@dataclass
class RecordFile:
    """One file of a Zenodo record: name, download URL, size in bytes, checksum ``algo:hex``."""

    key: str
    url: str
    size: int | None
    checksum: str


class _LocalWriteError(Exception):
    """A local file could not be written (full disk, read-only): not retried as a network
    error; the ``OSError`` (naming the file) is re-raised."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _check_http(url: str, what: str) -> str:
    """``url`` when it is an http(s) link; a record may not point sfnet at local files."""
    scheme = urllib.parse.urlsplit(str(url)).scheme.lower()
    if scheme not in ("http", "https"):
        raise DataError(f"{what}: {str(url)[:200]!r} is not an http(s) link (refused)")
    return str(url)


def _get_json(url: str, timeout: float) -> dict:
    _check_http(url, "records API")
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
    doc = _get_json(url, timeout)
    if not isinstance(doc, dict):
        raise DataError(f"{url}: expected a JSON object (a record), got a {type(doc).__name__}")
    files = doc.get("files")
    if not isinstance(files, list):
        raise DataError(f"{url}: the record lists no files")
    out = {}
    for f in files:
        shown = repr(f)[:200]
        try:
            key = str(f["key"])
            link = f["links"].get("self") or f["links"]["content"]
            checksum = str(f["checksum"])
        except (KeyError, TypeError, AttributeError):
            raise DataError(f"{url}: malformed file entry {shown}") from None
        _check_http(link, f"{url}: file {key!r}")
        _checksum_algo(checksum, f"{url}: file {key!r}")
        size = f.get("size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int | str):
                size = "bad"
            try:
                size = int(size)
            except ValueError:
                raise DataError(
                    f"{url}: file {key!r} has a non-numeric size {f.get('size')!r}"
                ) from None
            if size < 0:
                raise DataError(f"{url}: file {key!r} has a negative size {size}")
        out[key] = RecordFile(key, link, size, checksum)
    return out


def _checksum_algo(checksum: str, what: str = "checksum") -> str:
    """The hash algorithm of an ``algo:hex`` checksum (``md5`` when no algorithm is named)."""
    algo = checksum.split(":", 1)[0].lower() if ":" in checksum else "md5"
    if algo not in hashlib.algorithms_guaranteed:
        known = ", ".join(sorted(a for a in hashlib.algorithms_guaranteed if "_" not in a))
        raise DataError(f"{what}: unknown checksum algorithm {algo[:40]!r} (known: {known})")
    return algo


def file_checksum(path: Path, algo: str = "md5") -> str:
    """``algo:hexdigest`` of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return f"{algo}:{h.hexdigest()}"


def _matches(path: Path, f: RecordFile) -> bool:
    return file_checksum(path, _checksum_algo(f.checksum)) == f.checksum


def _fetch_range(f: RecordFile, part: Path, timeout: float) -> None:
    """Append the rest of ``f`` to ``part`` (HTTP Range from its size); raise on a broken body."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "sfnet-paper-data"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(_check_http(f.url, f.key), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            mode = "ab" if have and r.status == 206 else "wb"  # 200: the server restarted
            start = have if mode == "ab" else 0
            # never more than the record's declared size: a server that keeps sending
            # cannot fill the disk
            left = None if f.size is None else f.size - start
            try:
                out = open(part, mode)  # noqa: SIM115 - closed below
            except OSError as e:
                raise _LocalWriteError(e) from None
            with out:
                while left is None or left > 0:
                    chunk = r.read(_CHUNK if left is None else min(_CHUNK, left))
                    if not chunk:
                        break
                    try:
                        out.write(chunk)
                    except OSError as e:
                        if e.filename is None:
                            e = OSError(e.errno, e.strerror or str(e), str(part))
                        raise _LocalWriteError(e) from None
                    if left is not None:
                        left -= len(chunk)
                if left == 0 and r.read(1):
                    raise DataError(
                        f"{f.url}: the server sends more than the record's size of {f.size} "
                        "bytes; stopped there (refusing the file)"
                    )
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the .part is whole
            return
        if e.code in _RETRY_STATUS:
            raise ConnectionError(f"HTTP {e.code} {e.reason}") from None
        raise DataError(f"{f.url}: HTTP {e.code} {e.reason}") from None


def download_file(
    f: RecordFile,
    dest: Path,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 1.0,
    overwrite: bool = False,
) -> bool:
    """Download one record file to ``dest``, resuming ``dest.part``, verified by its checksum.

    Returns:
        False when a verified ``dest`` was already there, True when it was downloaded.

    A ``dest`` that exists and does not match is someone else's file: refused unless
    ``overwrite``. At most the record's declared size is written.

    Raises:
        DataError: the checksum does not match (the partial file is removed), a permanent
            HTTP error, more bytes than declared, or still incomplete after ``retries`` retries.
        OSError: the local file cannot be written (full disk, read-only): not retried.
    """
    dest = Path(dest)
    if dest.is_file() and _matches(dest, f):
        return False
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise DataError(
            f"{dest}: exists and is not the record's {f.key} (checksum differs); sfnet does not "
            "replace a file it did not write - move it away, or use --overwrite"
        )
    part = dest.with_name(dest.name + ".part")
    last = ""
    for attempt in range(retries + 1):
        try:
            _fetch_range(f, part, timeout)
        except _LocalWriteError as e:  # a full or read-only disk: retrying will not help
            raise e.error from None
        except DataError:
            part.unlink(missing_ok=True)
            raise
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
        got = file_checksum(part, _checksum_algo(f.checksum))
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
    if not p.parts:  # "./" or "" - the archive's root folder (tar -C imgs -czf x.tar.gz .)
        if not m.isdir():
            raise DataError(f"{archive}: refusing member {m.name!r} (the archive's root)")
        return
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


def _is_root(m: tarfile.TarInfo) -> bool:
    return not PurePosixPath(m.name).parts


def _member_files(members: list[tarfile.TarInfo]) -> dict[str, int]:
    """{path relative to the image root: size} of the archive's files, with the leading folders
    :func:`_image_root` strips (one subfolder holding everything) removed."""
    files = {PurePosixPath(m.name).parts: m.size for m in members if m.isfile()}
    files = {k: v for k, v in files.items() if not any(c.startswith(".") for c in k)}
    while files and all(len(k) > 1 for k in files) and len({k[0] for k in files}) == 1:
        files = {k[1:]: v for k, v in files.items()}
    return {"/".join(k): v for k, v in files.items()}


def _marker(out: Path) -> Path:
    return out / UNPACKED_MARKER


def _read_marker(out: Path) -> dict | None:
    try:
        d = json.loads(_marker(out).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _write_marker(out: Path, archive_checksum: str | None, n_files: int) -> None:
    from sfnet.io import atomic_write_json

    atomic_write_json(_marker(out), {"archive": archive_checksum, "files": n_files})


def unpack_images(archive: Path, out: Path, checksum: str | None = None) -> Path:
    """Unpack an image archive safely into ``out/images``, atomically.

    Every member is checked (:func:`check_member`) before anything is written; the archive is
    extracted into a temporary sibling and renamed to ``out/images`` when complete, then the
    marker ``out/.images.unpacked.json`` records the archive (``checksum``) it came from.

    An existing ``out/images`` is reused only when the marker names this archive, or when it
    holds every file of the archive at its size (the marker is then written); an empty one is
    replaced; anything else is refused (it is never deleted).

    Returns:
        ``out/images``.

    Raises:
        DataError: an unsafe or unreadable archive, or an ``out/images`` that is not this
            archive's images.
    """
    out = Path(out)
    final = out / IMAGES_DIR
    if final.is_dir():
        done = _read_marker(out)
        if done is not None and done.get("archive") == checksum and checksum is not None:
            return final
        if any(final.iterdir()):
            _verify_unpacked(archive, final, checksum, out)
            return final
        final.rmdir()  # an empty folder: unpack into its place
    tmp = out / f".{IMAGES_DIR}.unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                check_member(m, archive)
            members = [m for m in members if not _is_root(m)]
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
    n_files = len(_member_files(members))
    if n_files == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: holds no files")
    root = _image_root(tmp)
    os.replace(root, final)
    shutil.rmtree(tmp, ignore_errors=True)
    _write_marker(out, checksum, n_files)
    return final


def _verify_unpacked(archive: Path, final: Path, checksum: str | None, out: Path) -> None:
    """Accept an ``images/`` folder without a marker when it holds every file of the archive at
    its size (e.g. a kill between the rename and the marker); refuse it otherwise."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            expected = _member_files(tar.getmembers())
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot read ({e})") from None
    wrong = [
        rel
        for rel, size in expected.items()
        if not (final / rel).is_file() or (final / rel).stat().st_size != size
    ]
    if wrong or not expected:
        raise DataError(
            f"{final}: exists but does not hold {archive.name}'s images ({len(wrong)} of "
            f"{len(expected)} missing or different, e.g. {wrong[:1]}); sfnet does not delete "
            "it - move it away and rerun"
        )
    _write_marker(out, checksum, len(expected))


@dataclass
class PaperDataResult:
    """Where :func:`fetch_paper_data` put the data, and what it downloaded (vs reused)."""

    folder: Path
    downloaded: list[str]
    reused: list[str]


@dataclass
class PaperDataConfig:
    """Settings of :func:`fetch_paper_data` (``sfnet fetch-paper-data``'s options are
    generated from these fields).

    Each field is a :func:`~sfnet.config.setting` (its help says what it is).
    """

    record: str = setting(PAPER_RECORD, "Zenodo record")
    api: str = setting(ZENODO_API, "base URL of the records API")
    retries: int = setting(5, "resumes per file", ge=0)
    timeout: float = setting(60.0, "socket timeout, seconds", gt=0)
    backoff: float = setting(1.0, "first retry delay, seconds", ge=0, cli=False)

    def validate(self) -> None:
        """Raises: ConfigError naming ``paper_data.FIELD`` outside its declared range."""
        check_fields(self, "paper_data")


def fetch_paper_data(
    out: Path,
    *,
    record: str = PaperDataConfig.record,
    api: str = PaperDataConfig.api,
    retries: int = PaperDataConfig.retries,
    timeout: float = PaperDataConfig.timeout,
    backoff: float = PaperDataConfig.backoff,
    overwrite: bool = False,
    log_fn: Callable[[str], None] | None = None,
) -> PaperDataResult:
    """Download and unpack the paper's data set into the dataset folder ``out``.

    Args:
        out: the dataset folder (created): ``galaxies.csv``, ``images/``, and the downloaded
            archive (kept, so a rerun verifies instead of downloading again).
        record: Zenodo record id. api: base URL of the records API (tests use 127.0.0.1).
        retries, timeout, backoff: per-file retry count (>= 0), socket timeout (s, > 0),
            first delay (s, >= 0).
        overwrite: replace files in ``out`` that are not the record's (never without it).
        log_fn: called with one line per step (the CLI prints them).
    """
    cfg = PaperDataConfig(record=record, api=api, retries=retries, timeout=timeout, backoff=backoff)
    cfg.validate()  # ConfigError naming paper_data.FIELD
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
        new = download_file(
            f, out / key, retries=retries, timeout=timeout, backoff=backoff, overwrite=overwrite
        )
        (done if new else reused).append(key)
    say(f"unpacking {IMAGES_ARCHIVE} into {out / IMAGES_DIR}")
    unpack_images(out / IMAGES_ARCHIVE, out, files[IMAGES_ARCHIVE].checksum)
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
