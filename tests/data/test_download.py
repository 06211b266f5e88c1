from __future__ import annotations

import contextlib
import io
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sfnet.cli import main
from sfnet.data.download import (
    DownloadConfig,
    RateLimiter,
    download_cutouts,
    is_complete_jpeg,
    validate_jpeg,
)
from sfnet.errors import DataError, UserError

SLOW_S = 0.6
TIMEOUT_S = 0.2


def _jpeg(size: int = 24) -> bytes:
    rng = np.random.default_rng(size)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


class FakeCutoutServer:
    """127.0.0.1 cutout service; ``plan[ra]`` scripts the answers to successive requests
    for that ra: ok, 500, 429, trunc (short body with a longer Content-Length), cut (short body,
    no length), slow (sleeps past the client timeout), 404, html (200 with a non-JPEG body)."""

    def __init__(self, plan: dict[str, list[str]]) -> None:
        self.plan = plan
        self.hits: Counter[str] = Counter()
        self.queries: dict[str, list[dict[str, list[str]]]] = defaultdict(list)
        self.body = _jpeg()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                q = parse_qs(urlparse(self.path).query)
                ra = q["ra"][0]
                with lock:
                    n = outer.hits[ra]
                    outer.hits[ra] += 1
                    outer.queries[ra].append(q)
                steps = outer.plan.get(ra, [])
                action = steps[n] if n < len(steps) else "ok"
                body = outer.body
                if action == "slow":
                    time.sleep(SLOW_S)
                    action = "ok"
                if action in ("500", "429", "404"):
                    self.send_response(int(action))
                    if action == "429":
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                if action == "html":
                    body = b"<html>rate limited</html>"
                if action != "cut":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if action in ("trunc", "cut"):
                    body = body[: len(body) // 2]
                with contextlib.suppress(OSError):  # the client gave up (slow answer)
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def template(self) -> str:
        port = self.server.server_address[1]
        return (
            f"http://127.0.0.1:{port}/cutout.jpg?ra={{ra}}&dec={{dec}}&layer={{layer}}"
            "&pixscale={pixscale}&size={size}"
        )

    def __enter__(self) -> FakeCutoutServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _catalog(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "objID": [1237648704043942100 + i for i in range(n)],
            "ra": [float(i + 1) for i in range(n)],
            "dec": [0.5] * n,
        }
    )


def _cfg(server: FakeCutoutServer, **kw) -> DownloadConfig:
    base = dict(
        url_template=server.template,
        workers=4,
        rate=0,
        retries=3,
        backoff=0.01,
        timeout=TIMEOUT_S,
    )
    base.update(kw)
    return DownloadConfig(**base)


def test_transient_failures_are_retried_until_success(tmp_path):
    plan = {
        "1.0": ["500", "500"],
        "2.0": ["429"],
        "3.0": ["trunc"],
        "4.0": ["cut"],
        "5.0": ["slow"],
        "6.0": ["html"],
    }
    cat = _catalog(7)
    with FakeCutoutServer(plan) as srv:
        res = download_cutouts(cat, tmp_path / "img", _cfg(srv, layer="ls-dr9", size=24))
    assert (res.total, res.downloaded, res.skipped, res.failed) == (7, 7, 0, [])
    assert res.failures_file is None
    assert srv.hits == {"1.0": 3, "2.0": 2, "3.0": 2, "4.0": 2, "5.0": 2, "6.0": 2, "7.0": 1}
    q = srv.queries["7.0"][0]
    assert q["layer"] == ["ls-dr9"] and q["size"] == ["24"] and q["pixscale"] == ["0.262"]
    files = sorted(p.name for p in (tmp_path / "img").iterdir())
    assert files == sorted(f"{o}.jpg" for o in cat["objID"])  # no temp files left
    for p in (tmp_path / "img").iterdir():
        assert p.read_bytes() == srv.body


def test_permanent_failures_are_summarised_and_never_written(tmp_path):
    plan = {"1.0": ["404"], "2.0": ["500"] * 10, "3.0": ["html"] * 10}
    out = tmp_path / "img"
    with FakeCutoutServer(plan) as srv:
        res = download_cutouts(_catalog(4), out, _cfg(srv, retries=2))
    assert res.downloaded == 1 and len(res.failed) == 3
    assert srv.hits["1.0"] == 1  # a 404 is not retried
    assert srv.hits["2.0"] == 3 and srv.hits["3.0"] == 3  # 1 + 2 retries
    reasons = dict(res.failed)
    assert "HTTP 404" in reasons["1237648704043942100"]
    assert "gave up after 3 attempts: HTTP 500" in reasons["1237648704043942101"]
    assert "not a JPEG" in reasons["1237648704043942102"]
    assert res.failures_file == out / "download_failures.tsv"
    table = pd.read_csv(res.failures_file, sep="\t", dtype={"objID": str})
    assert table["objID"].tolist() == [f"123764870404394210{i}" for i in range(3)]
    # ra/dec read back as numbers (not "np.float64(1.0)"), equal to the catalog's
    cat = _catalog(4)
    assert table["ra"].dtype == np.float64 and table["dec"].dtype == np.float64
    np.testing.assert_array_equal(table["ra"], cat["ra"][:3])
    np.testing.assert_array_equal(table["dec"], cat["dec"][:3])
    assert [p.name for p in out.iterdir() if p.suffix == ".jpg"] == ["1237648704043942103.jpg"]


def test_resume_skips_complete_files_and_refetches_partial_ones(tmp_path):
    out = tmp_path / "img"
    cat = _catalog(5)
    with FakeCutoutServer({"5.0": ["500"] * 10}) as srv:
        first = download_cutouts(cat, out, _cfg(srv, retries=0))
        assert first.downloaded == 4 and len(first.failed) == 1 and first.failures_file.exists()
        ids = cat["objID"].astype(str).tolist()
        (out / f"{ids[0]}.jpg").unlink()  # lost
        broken = out / f"{ids[1]}.jpg"
        broken.write_bytes(broken.read_bytes()[:100])  # half-written by another tool
        (out / f".{ids[2]}.jpg.abc123.tmp").write_bytes(b"partial")  # killed mid-write
        srv.plan = {}
        srv.hits.clear()
        second = download_cutouts(cat, out, _cfg(srv))
    assert (second.downloaded, second.skipped, second.failed) == (3, 2, [])
    assert srv.hits == {"1.0": 1, "2.0": 1, "5.0": 1}
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())
    assert not (out / "download_failures.tsv").exists()  # cleared by a clean run
    assert all(is_complete_jpeg(out / f"{o}.jpg") for o in ids)


def test_rate_limit_spaces_requests():
    lim = RateLimiter(50.0)
    t0 = time.monotonic()
    for _ in range(6):
        lim.wait()
    assert time.monotonic() - t0 >= 5 / 50 - 0.005


def test_jpeg_validation():
    body = _jpeg()
    validate_jpeg(body)
    with pytest.raises(Exception, match="not a JPEG"):
        validate_jpeg(b"<html>")
    with pytest.raises(OSError):
        validate_jpeg(body[: len(body) // 2])


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="bad URL template"):
        DownloadConfig(url_template="http://x/?ra={ra}&band={band}").validate()
    with pytest.raises(DataError, match="missing column 'ra'"):
        download_cutouts(_catalog(2).drop(columns=["ra"]), tmp_path)
    cat = _catalog(3)
    cat.loc[1, "dec"] = np.nan
    with pytest.raises(DataError, match=r"1 row\(s\) without valid ra/dec.*\[1\]"):
        download_cutouts(cat, tmp_path)


def test_cli_download(tmp_path, capsys):
    cat_path = tmp_path / "galaxies.csv"
    _catalog(3).to_csv(cat_path, index=False)
    with FakeCutoutServer({"2.0": ["404"]}) as srv:
        argv = [
            "download",
            "--catalog",
            str(cat_path),
            "--out",
            str(tmp_path / "images"),
            "--url-template",
            srv.template,
            "--rate",
            "0",
            "--backoff",
            "0.01",
            "--no-progress",
        ]
        assert main(argv) == 1
        assert "2 downloaded, 0 already present, 1 failed of 3" in capsys.readouterr().out
        srv.plan = {}
        assert main(argv) == 0
    assert "1 downloaded, 2 already present, 0 failed" in capsys.readouterr().out


def test_a_full_disk_stops_the_download_in_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import sfnet.io

    def full(path, data, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(sfnet.io, "atomic_write_bytes", full)
    catalog = tmp_path / "cat.csv"
    _catalog(40).to_csv(catalog, index=False)
    with FakeCutoutServer({}) as server:
        argv = ["download", "--catalog", str(catalog), "--out", str(tmp_path / "img")]
        argv += [
            "--url-template",
            server.template,
            "--rate",
            "0",
            "--workers",
            "2",
            "--no-progress",
        ]
        assert main(argv) == 2
        hits = sum(server.hits.values())
    err = capsys.readouterr().err.strip()
    assert "no space left" in err and ".jpg" in err and len(err.splitlines()) == 1
    assert hits <= 4  # stopped at once: not every galaxy tried (and none retried)
