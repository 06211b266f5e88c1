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

    def __init__(self, bodies, checksums=None, truncate=(), flood=(), record=None, links=None):
        self.bodies, self.checksums, self.truncate = bodies, checksums or {}, set(truncate)
        self.flood = set(flood)  # names sent with no length, followed by endless junk
        self.record_json, self.links = record, links or {}  # raw record document; link overrides
        self.ranges: list[str | None] = []
        self.requests: list[str] = []
        self.flood_sent = 0
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
        if self.record_json is not None:
            body = json.dumps(self.record_json).encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        files = [
            {
                "key": name,
                "size": len(body),
                "checksum": self.checksums.get(name, "md5:" + hashlib.md5(body).hexdigest()),
                "links": {"self": self.links.get(name, self.api.replace("/api", "/files/") + name)},
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
        self.requests.append(name)
        body = self.bodies[name]
        if name in self.flood:  # the declared body, then up to 64 MiB more (bounded)
            h.send_response(200)
            h.end_headers()
            h.close_connection = True
            junk = b"\0" * (64 << 10)
            with contextlib.suppress(OSError):
                h.wfile.write(body)
                for _ in range(1024):
                    h.wfile.write(junk)
                    self.flood_sent += len(junk)
            return
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


# ------------------------------------------------- a hostile or broken record, a full disk


BODIES = {"galaxies.csv": CATALOG, "images-sdss.tar.gz": GOOD_TAR}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_download_stops_at_the_declared_size(tmp_path, capsys):
    with fake(bodies=BODIES, flood={"galaxies.csv"}) as srv:
        assert main(["fetch-paper-data", str(tmp_path), "--api", srv.api, "--retries", "0"]) == 2
        sent = srv.flood_sent
    assert "more than the record's size" in _one_line(capsys)
    assert sent < 32 << 20  # the client hung up: not 64 MiB (socket buffers hold a few MiB)
    assert not any(p.stat().st_size > len(CATALOG) for p in tmp_path.iterdir() if p.is_file())


def test_only_http_links_are_followed(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("objID\n1\n")
    out = tmp_path / "out"
    with fake(bodies=BODIES, links={"galaxies.csv": secret.as_uri()}) as srv:
        assert main(["fetch-paper-data", str(out), "--api", srv.api]) == 2
    assert "not an http(s) link" in _one_line(capsys)
    assert not (out / "galaxies.csv").exists()
    assert main(["fetch-paper-data", str(out), "--api", tmp_path.as_uri()]) == 2
    assert "not an http(s) link" in _one_line(capsys)


def _entry(**kw):
    e = {"key": "galaxies.csv", "size": 3, "checksum": "md5:" + "0" * 32}
    e["links"] = {"self": "http://127.0.0.1:1/files/galaxies.csv"}
    return {**e, **kw}


@pytest.mark.parametrize(
    "record, says",
    [
        ({"files": [_entry(checksum="sha999:abc")]}, "unknown checksum algorithm 'sha999'"),
        ({"files": [_entry(size="many")]}, "non-numeric size 'many'"),
        ({"files": [_entry(size=[1])]}, "non-numeric size"),
        ([{"files": []}], "expected a JSON object"),
    ],
)
def test_a_malformed_record_is_one_line(tmp_path, capsys, record, says):
    with fake(bodies=BODIES, record=record) as srv:
        assert main(["fetch-paper-data", str(tmp_path / "o"), "--api", srv.api]) == 2
    assert says in _one_line(capsys)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--timeout", "-1"], "argument --timeout: must be a finite number > 0"),
        (["--timeout", "0"], "argument --timeout: must be a finite number > 0"),
        (["--timeout", "nan"], "argument --timeout: must be a finite number > 0"),
        (["--retries", "-1"], "argument --retries: must be an integer >= 0"),
    ],
)
def test_fetch_option_ranges(tmp_path, capsys, args, says):
    with fake(bodies=BODIES) as srv:
        with pytest.raises(SystemExit) as e:  # refused while parsing, as 'train --epochs 0' is
            main(["fetch-paper-data", str(tmp_path / "o"), "--api", srv.api, *args])
        assert e.value.code == 2
        assert srv.requests == []
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the usage
    assert err.startswith("sfnet fetch-paper-data: error: ") and says in err, err
    assert not (tmp_path / "o").exists()


def test_fetch_options_are_the_paper_data_settings():
    import dataclasses

    from sfnet.cli import build_parser
    from sfnet.cli.paper_data import paper_data_config_from_args
    from sfnet.config import ConfigError
    from sfnet.data.paper_data import PaperDataConfig

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    opts = {s: a for a in sub.choices["fetch-paper-data"]._actions for s in a.option_strings}
    for f in dataclasses.fields(PaperDataConfig):  # the declared help and default
        flag = "--" + f.name.replace("_", "-")
        assert (flag in opts) == f.metadata["cli"], f.name
        if f.metadata["cli"]:
            assert opts[flag].help == f"{f.metadata['help']} [default: {f.default}]", f.name
    args = build_parser().parse_args(["fetch-paper-data", "o", "--retries", "2"])
    assert paper_data_config_from_args(args) == PaperDataConfig(retries=2)
    with pytest.raises(ConfigError, match=r"paper_data\.backoff must be"):  # the library too
        fetch_paper_data("never-made", backoff=-1.0)


def test_an_archive_made_with_tar_c_dot_unpacks(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:  # tar -C imgs -czf x.tar.gz .
        root = tarfile.TarInfo("./")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        for j, i in enumerate(IDS):
            info = tarfile.TarInfo(f"./{i}.jpg")
            body = _jpeg(j)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    bodies = {"galaxies.csv": CATALOG, "images-sdss.tar.gz": buf.getvalue()}
    with fake(bodies=bodies) as srv:
        fetch_paper_data(tmp_path, api=srv.api, backoff=0.0)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(
        f"{i}.jpg" for i in IDS
    )


def test_an_existing_images_folder_is_verified_not_trusted(tmp_path, capsys):
    out = tmp_path / "paper"
    (out / "images").mkdir(parents=True)  # empty: unpacked into
    with fake(bodies=BODIES) as srv:
        fetch_paper_data(out, api=srv.api, backoff=0.0)
        assert len(list((out / "images").iterdir())) == 3
        # someone's own images folder: refused, never deleted, never reported as success
        other = tmp_path / "other"
        (other / "images").mkdir(parents=True)
        (other / "images" / "mine.jpg").write_bytes(b"mine")
        assert main(["fetch-paper-data", str(other), "--api", srv.api]) == 2
        assert "does not hold images-sdss.tar.gz's images" in _one_line(capsys)
        assert (other / "images" / "mine.jpg").read_bytes() == b"mine"
        # a complete images/ without the marker (a kill after the rename) is accepted
        (out / ".images.unpacked.json").unlink()
        fetch_paper_data(out, api=srv.api, backoff=0.0)
        assert (out / ".images.unpacked.json").is_file()


def test_a_users_catalog_is_never_replaced_without_overwrite(tmp_path, capsys):
    (tmp_path / "galaxies.csv").write_text("objID\n42\n")
    with fake(bodies=BODIES) as srv:
        assert main(["fetch-paper-data", str(tmp_path), "--api", srv.api]) == 2
        assert "--overwrite" in _one_line(capsys)
        assert (tmp_path / "galaxies.csv").read_text() == "objID\n42\n"
        assert main(["fetch-paper-data", str(tmp_path), "--api", srv.api, "--overwrite"]) == 0
    assert (tmp_path / "galaxies.csv").read_bytes() == CATALOG


def test_a_full_disk_is_not_retried_as_a_network_error(tmp_path, capsys, monkeypatch):
    import errno

    import sfnet.data.paper_data as pd_mod

    class Full:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            pass

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd_mod, "open", Full, raising=False)
    with fake(bodies=BODIES) as srv:
        assert main(["fetch-paper-data", str(tmp_path), "--api", srv.api]) == 2
        assert srv.requests == ["galaxies.csv"]  # one attempt, no retries
    err = _one_line(capsys)
    assert "galaxies.csv.part: no space left" in err
