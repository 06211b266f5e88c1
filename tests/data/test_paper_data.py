"""sfnet fetch-paper-data against a fake Zenodo record on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from sfnet.cli import main
from sfnet.config import DataConfig
from sfnet.data.dataset import load_dataset
from sfnet.data.paper_data import fetch_paper_data
from sfnet.errors import DataError

RECORD = "14712542"
IDS = [1237648704043942146, 1237667292122513532, 1237665441525596194]


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _tar(members: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """A .tar.gz of (name, body, symlink target) members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


GOOD_TAR = _tar([(f"images-sdss/{i}.jpg", _jpeg(j), None) for j, i in enumerate(IDS)])
CATALOG = ("objID,oh_p50\n" + "".join(f"{i},{8.7 + 0.1 * j}\n" for j, i in enumerate(IDS))).encode()


class FakeZenodo:
    """Serves ``/api/records/RECORD`` and ``/files/NAME`` (with HTTP Range).

    ``bodies``: file name -> bytes; ``checksums``: overrides of the md5 the API announces;
    ``truncate``: names whose first response sends only half the body, then closes.
    """

    def __init__(self, bodies, checksums=None, truncate=()):
        self.bodies, self.checksums, self.truncate = bodies, checksums or {}, set(truncate)
        self.ranges: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/api/records/"):
                    return outer.record(self)
                return outer.file(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, h):
        files = [
            {
                "key": name,
                "size": len(body),
                "checksum": self.checksums.get(name, "md5:" + hashlib.md5(body).hexdigest()),
                "links": {"self": self.api.replace("/api", "/files/") + name},
            }
            for name, body in self.bodies.items()
        ]
        body = json.dumps({"id": RECORD, "files": files}).encode()
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def file(self, h):
        name = h.path.rsplit("/", 1)[1]
        body = self.bodies[name]
        rng = h.headers.get("Range")
        self.ranges.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        h.send_response(206 if rng else 200)
        h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        if name in self.truncate:
            self.truncate.discard(name)
            h.wfile.write(body[start : start + (len(body) - start) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body[start:])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def fake(**kw):
    srv = FakeZenodo(**kw)
    try:
        yield srv
    finally:
        srv.close()


def test_fetch_good_record_gives_a_dataset_folder(tmp_path):
    out = tmp_path / "paper"
    bodies = {"galaxies.csv": CATALOG, "images-sdss.tar.gz": GOOD_TAR, "README.md": b"x"}
    with fake(bodies=bodies) as srv:
        assert main(["fetch-paper-data", str(out), "--api", srv.api]) == 0
        assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{i}.jpg" for i in IDS)
        data = load_dataset(DataConfig(path=str(out), target="metallicity", crop=16))
        assert len(data) == 3 and data.images[np.arange(3)].shape == (3, 3, 16, 16)
        assert not list(out.glob(".*unpacking*")) and not list(out.glob("*.part"))
        # a rerun verifies and reuses both files, downloading nothing
        n = len(srv.ranges)
        res = fetch_paper_data(out, api=srv.api)
        assert res.reused == ["galaxies.csv", "images-sdss.tar.gz"] and len(srv.ranges) == n


def test_wrong_checksum_is_refused_and_nothing_kept(tmp_path):
    bad = {"images-sdss.tar.gz": "md5:" + "0" * 32}
    bodies = {"galaxies.csv": CATALOG, "images-sdss.tar.gz": GOOD_TAR}
    with fake(bodies=bodies, checksums=bad) as srv, pytest.raises(DataError, match="checksum"):
        fetch_paper_data(tmp_path, api=srv.api, backoff=0.0)
    assert not (tmp_path / "images-sdss.tar.gz").exists()
    assert not (tmp_path / "images-sdss.tar.gz.part").exists()
    assert not (tmp_path / "images").exists()


def test_truncated_body_is_resumed_with_a_range_request(tmp_path):
    bodies = {"galaxies.csv": CATALOG, "images-sdss.tar.gz": GOOD_TAR}
    with fake(bodies=bodies, truncate={"images-sdss.tar.gz"}) as srv:
        res = fetch_paper_data(tmp_path, api=srv.api, backoff=0.0)
    assert res.downloaded == ["galaxies.csv", "images-sdss.tar.gz"]
    half = (len(GOOD_TAR)) // 2
    assert f"bytes={half}-" in srv.ranges  # the second request asked only for the rest
    assert (tmp_path / "images-sdss.tar.gz").read_bytes() == GOOD_TAR
    assert len(list((tmp_path / "images").iterdir())) == 3


@pytest.mark.parametrize(
    "member",
    [("../evil.jpg", b"x", None), ("/tmp/evil.jpg", b"x", None), ("images/link.jpg", None, "/etc")],
)
def test_malicious_tar_member_is_refused_before_writing(tmp_path, member):
    tar = _tar([(f"images/{IDS[0]}.jpg", _jpeg(0), None), member])
    out = tmp_path / "out"
    bodies = {"galaxies.csv": CATALOG, "images-sdss.tar.gz": tar}
    with fake(bodies=bodies) as srv, pytest.raises(DataError, match="unsafe member|refusing link"):
        fetch_paper_data(out, api=srv.api, backoff=0.0)
    assert not (out / "images").exists() and not list(out.glob(".*unpacking*"))
    assert not (tmp_path / "evil.jpg").exists()
