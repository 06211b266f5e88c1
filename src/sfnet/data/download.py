"""Cutout downloader for the DESI Legacy Survey viewer (or any service with a URL template).

Fetches ``{objID}.jpg`` for every catalog row with N concurrent connections (threads + urllib),
a global rate limit, retries with exponential backoff on HTTP 429 / 5xx, timeouts, dropped
connections and truncated or undecodable bodies, and atomic writes: a file carries its final
name only once its whole body was received and decoded as a JPEG. Files already present and
complete are skipped, so an interrupted download resumes. Failures are summarised in a TSV.
"""

from __future__ import annotations

import http.client
import io
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from sfnet.config import setting
from sfnet.errors import DataError, UserError
from sfnet.io import UnsafeNameError, check_output_file, objid_filename
from sfnet.progress import progress_bar

#: The public Legacy Survey cutout service (JPEG, gri-like colours from the chosen layer).
DEFAULT_URL_TEMPLATE = (
    "https://www.legacysurvey.org/viewer/cutout.jpg"
    "?ra={ra}&dec={dec}&layer={layer}&pixscale={pixscale}&size={size}"
)
FAILURES_FILE = "download_failures.tsv"
_RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass
class DownloadConfig:
    """Settings of a cutout download.

    Attributes:
        url_template: ``str.format`` template with ``{ra}``, ``{dec}`` (degrees), ``{layer}``,
            ``{pixscale}`` (arcsec/px), ``{size}`` (px) and optionally ``{objid}``.
        layer: survey layer of the Legacy Survey viewer. Default ``sdss`` (SDSS gri, the
            paper's images); others such as ``ls-dr10`` (grz) are options.
        pixscale: arcsec per pixel (Legacy Survey native: 0.262).
        size: cutout side in pixels.
        workers: concurrent connections.
        rate: at most this many requests started per second, over all connections (0: no limit).
        retries: extra attempts after the first for retryable failures.
        backoff: first retry delay in seconds; doubled at each retry (with up to 25% jitter).
        max_backoff: cap of one retry delay (also caps a server's Retry-After), seconds.
        timeout: socket timeout of one request, seconds.
        user_agent: HTTP User-Agent header.
    """

    url_template: str = setting(
        DEFAULT_URL_TEMPLATE, "URL with {ra} {dec} {layer} {pixscale} {size} {objid}"
    )
    layer: str = setting(
        "sdss",
        "Legacy Survey viewer layer: sdss (SDSS gri, the paper's images) or e.g. ls-dr10 (grz)",
    )
    pixscale: float = setting(0.262, "arcsec per pixel", gt=0)
    size: int = setting(160, "cutout side, pixels", ge=1)
    workers: int = setting(8, "concurrent connections", ge=1)
    rate: float = setting(10.0, "max requests per second, all connections (0: no limit)", ge=0)
    retries: int = setting(5, "retries per cutout", ge=0)
    backoff: float = setting(1.0, "first retry delay in seconds, doubled each retry", ge=0)
    max_backoff: float = setting(60.0, "cap of one retry delay (and of Retry-After), seconds", gt=0)
    timeout: float = setting(30.0, "request timeout, seconds", gt=0)
    user_agent: str = setting("sfnet-cutout-downloader", "HTTP User-Agent header", cli=False)

    def validate(self) -> None:
        if self.workers < 1:
            raise UserError(f"workers must be >= 1, got {self.workers}")
        if self.rate < 0 or self.retries < 0 or self.backoff < 0:
            raise UserError("rate, retries and backoff must be >= 0")
        if self.size <= 0 or self.pixscale <= 0 or self.timeout <= 0:
            raise UserError("size, pixscale and timeout must be positive")
        try:
            self.url(0.0, 0.0, "0")
        except (KeyError, IndexError, ValueError) as e:
            raise UserError(
                f"bad URL template {self.url_template!r}: {e!r} (placeholders: "
                "{ra} {dec} {layer} {pixscale} {size} {objid})"
            ) from None

    def url(self, ra: float, dec: float, objid: str) -> str:
        """The request URL of one galaxy (ra, dec in degrees)."""
        return self.url_template.format(
            ra=repr(float(ra)),
            dec=repr(float(dec)),
            layer=self.layer,
            pixscale=repr(float(self.pixscale)),
            size=int(self.size),
            objid=objid,
        )


@dataclass
class DownloadResult:
    """Outcome of :func:`download_cutouts`.

    Attributes:
        total: catalog rows.
        downloaded: files fetched now.
        skipped: complete files already present.
        failed: (objID, reason) of galaxies whose cutout could not be fetched.
        failures_file: TSV listing the failures, or None when there are none.
        seconds: wall time.
    """

    total: int
    downloaded: int
    skipped: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    failures_file: Path | None = None
    seconds: float = 0.0


class RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart, across threads."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if self._interval == 0.0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Permanent(Exception):
    pass


def is_complete_jpeg(path: Path) -> bool:
    """Cheap completeness check of a file on disk: JPEG start and end markers present."""
    try:
        size = path.stat().st_size
        if size < 4:
            return False
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(-2, os.SEEK_END)
            tail = f.read(2)
    except OSError:
        return False
    return head == b"\xff\xd8" and tail == b"\xff\xd9"


def validate_jpeg(body: bytes) -> None:
    """Raise ValueError unless ``body`` is a completely decodable JPEG."""
    from PIL import Image

    if not body.startswith(b"\xff\xd8"):
        raise ValueError(f"not a JPEG (starts with {body[:12]!r})")
    with Image.open(io.BytesIO(body)) as im:
        if im.format != "JPEG":
            raise ValueError(f"not a JPEG ({im.format})")
        im.load()


def _fetch(url: str, cfg: DownloadConfig) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": cfg.user_agent})
    try:
        with urllib.request.urlopen(req, timeout=cfg.timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code} {e.reason}"
        if e.code in _RETRY_STATUS:
            raise _Retryable(reason, _retry_after(e.headers.get("Retry-After"))) from None
        raise _Permanent(reason) from None
    except urllib.error.URLError as e:
        raise _Retryable(f"connection failed: {e.reason}") from None
    except TimeoutError:
        raise _Retryable(f"timed out after {cfg.timeout:g} s") from None
    except http.client.IncompleteRead as e:
        raise _Retryable(f"truncated body ({len(e.partial)} bytes received)") from None
    except (http.client.HTTPException, ConnectionError, OSError) as e:
        raise _Retryable(f"{type(e).__name__}: {e}") from None
    try:
        validate_jpeg(body)
    except Exception as e:  # noqa: BLE001 - any decoder error means a bad body
        raise _Retryable(f"bad JPEG body ({len(body)} bytes): {e}") from None
    return body


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _download_one(
    objid: str,
    url: str,
    dest: Path,
    cfg: DownloadConfig,
    limiter: RateLimiter,
    stop: threading.Event,
) -> str | None:
    """Fetch one cutout to ``dest`` atomically; return None on success, else the reason."""
    from sfnet.io import atomic_write_bytes

    last = ""
    for attempt in range(cfg.retries + 1):
        if stop.is_set():
            return "interrupted"
        limiter.wait()
        try:
            body = _fetch(url, cfg)
        except _Permanent as e:
            return str(e)
        except _Retryable as e:
            last = str(e)
            if attempt == cfg.retries:
                break
            delay = min(cfg.max_backoff, cfg.backoff * 2**attempt)
            delay *= 1.0 + 0.25 * random.random()
            if e.retry_after is not None:
                delay = max(delay, min(e.retry_after, cfg.max_backoff))
            if stop.wait(delay):
                return "interrupted"
            continue
        atomic_write_bytes(dest, body, clean_stale=False)  # stale temps: removed up front
        return None
    return f"gave up after {cfg.retries + 1} attempts: {last}"


def _catalog_rows(catalog: pd.DataFrame | Path) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    from sfnet.data.catalog import read_catalog

    source = "catalog"
    if not isinstance(catalog, pd.DataFrame):
        source = str(catalog)
        catalog = read_catalog(Path(catalog))
    for col in ("objID", "ra", "dec"):
        if col not in catalog.columns:
            raise DataError(f"{source}: missing column {col!r} (needed to fetch cutouts)")
    ra = pd.to_numeric(catalog["ra"], errors="coerce").to_numpy(dtype=np.float64)
    dec = pd.to_numeric(catalog["dec"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90))
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"{source}: {len(rows)} row(s) without valid ra/dec (degrees), e.g. rows "
            f"{rows[:20].tolist()}"
        )
    ids = [str(o) for o in catalog["objID"].to_numpy()]
    unsafe = []
    for row, o in enumerate(ids):
        try:
            objid_filename(o, ".jpg")
        except UnsafeNameError as e:
            unsafe.append((row, e))
    if unsafe:  # objIDs are data, never paths: refused before anything is fetched
        row, e = unsafe[0]
        more = f" (and {len(unsafe) - 1} more row(s))" if len(unsafe) > 1 else ""
        raise DataError(f"{source}: row {row}: {e}{more}")
    return ids, ra, dec, source


def _fetch_all(
    todo: list[int],
    ids: list[str],
    ra: np.ndarray,
    dec: np.ndarray,
    out: Path,
    cfg: DownloadConfig,
    bar: tqdm,
    on_done: Callable[[int, int], None] | None,
) -> dict[int, str]:
    """Fetch catalog rows ``todo`` into ``out/{objID}.jpg`` with ``cfg.workers`` threads sharing
    one rate limiter; returns {row: failure reason}. Ctrl-C stops every thread, then re-raises."""
    limiter = RateLimiter(cfg.rate)
    stop = threading.Event()
    lock = threading.Lock()
    failures: dict[int, str] = {}
    state = {"next": 0, "done": 0}
    fatal: list[OSError] = []

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if state["next"] >= len(todo):
                    return
                i = todo[state["next"]]
                state["next"] += 1
            o = ids[i]
            try:
                reason = _download_one(
                    o,
                    cfg.url(ra[i], dec[i], o),
                    out / objid_filename(o, ".jpg"),
                    cfg,
                    limiter,
                    stop,
                )
            except OSError as e:  # a local disk problem (full, read-only): stop, not a retry
                with lock:
                    fatal.append(e)
                stop.set()
                return
            with lock:
                if reason is not None:
                    failures[i] = reason
                state["done"] += 1
                bar.update(1)
                if on_done is not None:
                    on_done(state["done"], len(todo))

    threads = [
        threading.Thread(target=worker, daemon=True)
        for _ in range(min(cfg.workers, max(1, len(todo))))
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except BaseException:
        stop.set()
        for t in threads:
            t.join()
        raise
    if fatal:
        raise fatal[0]
    return failures


def _write_failures(
    path: Path,
    failures: dict[int, str],
    ids: list[str],
    ra: np.ndarray,
    dec: np.ndarray,
    cfg: DownloadConfig,
) -> None:
    """Write the failures list (TSV: objID, ra, dec, reason, url; rows in catalog order)."""
    from sfnet.io import atomic_write_bytes

    lines = ["objID\tra\tdec\treason\turl"]
    for i in sorted(failures):
        lines.append(
            f"{ids[i]}\t{float(ra[i])!r}\t{float(dec[i])!r}\t{failures[i]}\t{cfg.url(ra[i], dec[i], ids[i])}"
        )
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def download_cutouts(
    catalog: pd.DataFrame | Path,
    out: Path,
    cfg: DownloadConfig | None = None,
    failures_file: Path | None = None,
    progress: bool = False,
    on_done: Callable[[int, int], None] | None = None,
) -> DownloadResult:
    """Download ``out/{objID}.jpg`` for every row of a catalog with ``objID``, ``ra``, ``dec``.

    Args:
        catalog: a DataFrame or a catalog file (CSV / Parquet / FITS).
        out: image folder (created); complete JPEGs already there are skipped.
        cfg: download settings (defaults: Legacy Survey DR10, 0.262"/px, 160 px).
        failures_file: where to list failures (TSV: objID, ra, dec, reason, url); default
            ``out/download_failures.tsv``. Removed when a run has no failure.
        progress: show a tqdm progress bar.
        on_done: called as ``on_done(finished, to_fetch)`` after each galaxy.

    Returns:
        Counts and the failures; the function does not raise for per-galaxy failures.
    """
    t0 = time.perf_counter()
    cfg = cfg or DownloadConfig()
    cfg.validate()
    ids, ra, dec, _ = _catalog_rows(catalog)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    failures_file = Path(failures_file) if failures_file else out / FAILURES_FILE
    if not isinstance(catalog, pd.DataFrame):  # the failure list never replaces the catalog
        check_output_file(failures_file, overwrite=True, inputs=[catalog])
    # Temporary files of a killed run (atomic writes: never under a final name).
    for p in out.glob(".*.jpg.*.tmp"):
        p.unlink(missing_ok=True)

    todo = [i for i, o in enumerate(ids) if not is_complete_jpeg(out / objid_filename(o, ".jpg"))]
    skipped = len(ids) - len(todo)
    bar = progress_bar(progress, len(todo), "download", "img")
    try:
        failures = _fetch_all(todo, ids, ra, dec, out, cfg, bar, on_done)
    finally:
        bar.close()

    failed = [(ids[i], failures[i]) for i in sorted(failures)]
    if failed:
        _write_failures(failures_file, failures, ids, ra, dec, cfg)
    else:
        failures_file.unlink(missing_ok=True)
    return DownloadResult(
        total=len(ids),
        downloaded=len(todo) - len(failed),
        skipped=skipped,
        failed=failed,
        failures_file=failures_file if failed else None,
        seconds=time.perf_counter() - t0,
    )
