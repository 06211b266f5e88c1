from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.visualization import make_lupton_rgb
from PIL import Image

from sfnet.config import DataConfig
from sfnet.data import store
from sfnet.data.dataset import load_dataset
from sfnet.data.store import (
    FolderImages,
    PackedImages,
    decode_image,
    fingerprint,
    open_images,
    prepare,
    skipped_objids,
)
from sfnet.errors import DataError

BASE = 1237648704043942100  # 19-digit IDs, as SDSS


def _image(i: int, size: int) -> np.ndarray:
    """(H, W, 3) uint8 with a per-galaxy pattern, so crops and order are checkable."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack(
        [(xx * 5 + i) % 256, (yy * 3 + 2 * i) % 256, (xx + yy + 7 * i) % 256], -1
    ).astype(np.uint8)


def make_folder(
    root: Path, n: int = 10, size: int = 32, ext: str = "png"
) -> tuple[Path, list[int]]:
    root.mkdir(parents=True, exist_ok=True)
    ids = [BASE + i for i in range(n)]
    pd.DataFrame({"objID": ids, "oh_p50": np.linspace(8.5, 9.2, n)}).to_csv(
        root / "galaxies.csv", index=False
    )
    (root / "images").mkdir()
    for i, o in enumerate(ids):
        Image.fromarray(_image(i, size)).save(root / "images" / f"{o}.{ext}")
    return root, ids


def _expected(i: int, size: int, crop: int) -> np.ndarray:
    o = (size - crop) // 2
    return _image(i, size)[o : o + crop, o : o + crop].transpose(2, 0, 1)


def test_folder_store_crops_in_objid_order(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=5, size=33)
    order = ids[::-1]
    imgs = open_images(folder, np.array(order), crop=20)
    assert isinstance(imgs, FolderImages)
    assert imgs.shape == (5, 3, 20, 20) and len(imgs) == 5
    got = imgs[np.array([0, 4])]
    assert got.dtype == np.uint8
    assert np.array_equal(got[0], _expected(4, 33, 20))  # reversed order
    assert np.array_equal(got[1], _expected(0, 33, 20))


def test_jpeg_resize_then_crop(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=2, size=48, ext="jpg")
    imgs = open_images(folder, ids, crop=24, resize=32)
    with Image.open(folder / "images" / f"{ids[1]}.jpg") as im:
        ref = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
    assert np.array_equal(imgs[np.array([1])][0], ref[4:28, 4:28].transpose(2, 0, 1))


def test_fits_gri_cube_and_planes_use_lupton_asinh(tmp_path):
    rng = np.random.default_rng(0)
    gri = rng.gamma(2.0, 0.5, size=(3, 16, 16)).astype(np.float32)
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(gri).writeto(cube)
    planes = tmp_path / "planes.fits"
    fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(p) for p in gri]).writeto(planes)
    grz = tmp_path / "grz.fits"
    hdu = fits.PrimaryHDU(np.stack([gri[2], gri[0], gri[1]]))  # stored as z, g, r
    hdu.header["BANDS"] = "zgr"
    hdu.writeto(grz)
    si, sr, sg = store.LUPTON_RGB_SCALES
    ref = make_lupton_rgb(
        si * gri[2],
        sr * gri[1],
        sg * gri[0],
        minimum=store.LUPTON_MINIMUM,
        stretch=store.LUPTON_STRETCH,
        Q=store.LUPTON_Q,
    )[::-1].transpose(2, 0, 1)
    for p in (cube, planes, grz):
        assert np.array_equal(decode_image(p, None), ref), p.name
    two = tmp_path / "two.fits"
    fits.PrimaryHDU(gri[:2]).writeto(two)
    with pytest.raises(store.BadImage, match="2 planes"):
        decode_image(two, None)


def test_missing_images_list_first_20_and_count(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=25, size=8)
    for o in ids[:23]:
        (folder / "images" / f"{o}.png").unlink()
    with pytest.raises(DataError, match=r"no image for 23 objID\(s\).*first 20 shown") as e:
        open_images(folder, ids, crop=8)
    assert str(ids[19]) in str(e.value) and str(ids[20]) not in str(e.value)


def test_crop_larger_than_images_is_clear(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=2, size=16)
    with pytest.raises(DataError, match="16x16 px, smaller than the crop 20"):
        open_images(folder, ids, crop=20)


def test_prepare_matches_folder_decode_and_crops_on_read(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=7, size=31)
    res = prepare(folder, workers=1, chunk_size=3)
    assert (res.n_images, res.n_bad, res.height, res.width) == (7, 0, 31, 31)
    assert (folder / "packed" / "native" / "images.u8").stat().st_size == 7 * 3 * 31 * 31
    sub = [ids[5], ids[0], ids[3]]
    imgs = open_images(folder, sub, crop=20)
    assert isinstance(imgs, PackedImages) and imgs.shape == (3, 3, 20, 20)
    got = imgs[np.array([0, 1, 2, 0])]
    for j, i in enumerate([5, 0, 3, 5]):
        assert np.array_equal(got[j], _expected(i, 31, 20))
    assert np.array_equal(imgs[1], _expected(0, 31, 20))
    # Pickles (DataLoader workers) without carrying the pixel data.
    blob = pickle.dumps(imgs)
    assert len(blob) < 2000
    assert np.array_equal(pickle.loads(blob)[np.array([2])][0], _expected(3, 31, 20))
    assert prepare(folder, workers=1).up_to_date


def test_prepare_with_worker_processes_and_stored_crop(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=9, size=24, ext="png")
    res = prepare(folder, crop=16, workers=2, chunk_size=2)
    assert (res.height, res.width, res.crop) == (16, 16, 16)
    imgs = open_images(folder, ids, crop=16)
    assert all(np.array_equal(imgs[i], _expected(i, 24, 16)) for i in range(9))
    # another geometry than the store's is decoded from the images, not refused
    other = open_images(folder, ids, crop=12)
    assert isinstance(other, FolderImages)
    assert np.array_equal(other[4], _expected(4, 24, 12))
    assert isinstance(open_images(folder, ids, crop=16, resize=20), FolderImages)


def test_stale_store_is_refused(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=4, size=16)
    prepare(folder, workers=1)
    fp = fingerprint(folder)
    img = folder / "images" / f"{ids[2]}.png"
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint(folder) != fp
    with pytest.raises(DataError, match=r"stale.*re-run `sfnet prepare"):
        open_images(folder, ids, crop=16)
    (folder / "packed" / "native" / "index.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable packed-store index"):
        open_images(folder, ids, crop=16)
    prepare(folder, workers=1)  # replaces a broken or stale store
    open_images(folder, ids, crop=16)
    with open(folder / "galaxies.csv", "a") as f:
        f.write("\n")
    with pytest.raises(DataError, match="stale"):
        open_images(folder, ids, crop=16)


def test_prepare_resumes_after_interruption(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=10, size=16)
    calls = []

    def stop_after_two(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(folder, workers=1, chunk_size=3, on_chunk=stop_after_two)
    assert calls == [(1, 4), (2, 4)]
    packed = folder / "packed" / "native"
    assert not (packed / "images.u8").exists() and not (packed / "index.json").exists()
    with pytest.raises(DataError, match="incomplete"):
        open_images(folder, ids, crop=16)
    res = prepare(folder, workers=1, chunk_size=3)
    assert res.resumed_chunks == 2 and not res.up_to_date
    assert not (folder / "packed" / "native.new").exists()
    assert not (packed / "progress.json").exists() and not (packed / "images.u8.partial").exists()
    imgs = open_images(folder, ids, crop=16)
    assert all(np.array_equal(imgs[i], _expected(i, 16, 16)) for i in range(10))


def test_prepare_refuses_missing_and_corrupt_images(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=6, size=16)
    (folder / "images" / f"{ids[1]}.png").unlink()
    with pytest.raises(DataError, match=rf"no image for 1 objID\(s\): {ids[1]}.*--skip-bad"):
        prepare(folder, workers=1)
    Image.fromarray(_image(1, 16)).save(folder / "images" / f"{ids[1]}.png")
    (folder / "images" / f"{ids[4]}.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=rf"1 bad image\(s\): {ids[4]} \(cannot decode"):
        prepare(folder, workers=1)
    assert not (folder / "packed" / "native" / "index.json").exists()


def test_skip_bad_drops_counts_and_lists(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=6, size=16)
    (folder / "images" / f"{ids[1]}.png").unlink()
    (folder / "images" / f"{ids[4]}.png").write_bytes(b"garbage")
    Image.fromarray(_image(5, 20)).save(folder / "images" / f"{ids[5]}.png")  # wrong size
    res = prepare(folder, workers=1, skip_bad=True)
    assert (res.n_images, res.n_bad) == (3, 3)
    assert res.bad_file == folder / "packed" / "native" / "bad_images.txt"
    text = res.bad_file.read_text()
    assert all(str(ids[i]) in text for i in (1, 4, 5)) and "--resize" in text
    assert sorted(skipped_objids(folder)) == sorted(str(ids[i]) for i in (1, 4, 5))
    with pytest.raises(DataError, match="dropped by --skip-bad"):
        open_images(folder, ids, crop=16)
    data = load_dataset(DataConfig(path=str(folder), target="metallicity", crop=16))
    assert data.objid.tolist() == [ids[0], ids[2], ids[3]]
    assert data.y.shape == (3, 1) and data.images.shape == (3, 3, 16, 16)
    assert np.array_equal(data.images[np.array([1])][0], _expected(2, 16, 16))
    assert [c.removed for c in data.cuts if c.name.startswith("image usable")] == [3]


def test_load_dataset_folder_and_packed_agree(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=5, size=20, ext="png")
    cfg = DataConfig(path=str(folder), target="metallicity", crop=12)
    a = load_dataset(cfg)
    assert isinstance(a.images, FolderImages)
    prepare(folder, workers=1)
    b = load_dataset(cfg)
    assert isinstance(b.images, PackedImages)
    assert a.objid.tolist() == b.objid.tolist() == ids
    assert np.array_equal(a.images[np.arange(5)], b.images[np.arange(5)])
    assert a.fingerprint == b.fingerprint


def test_cli_prepare(tmp_path, capsys):
    from sfnet.cli import main

    folder, ids = make_folder(tmp_path / "d", n=4, size=16)
    assert main(["prepare", str(folder), "--workers", "1", "--no-progress"]) == 0
    assert "packed 4 images (16x16 px)" in capsys.readouterr().out
    assert main(["prepare", str(folder), "--no-progress"]) == 0
    assert "up to date" in capsys.readouterr().out
    (folder / "images" / f"{ids[0]}.png").unlink()
    assert main(["prepare", str(folder), "--no-progress"]) == 2
    assert f"no image for 1 objID(s): {ids[0]}" in capsys.readouterr().err
    assert main(["prepare", str(folder), "--no-progress", "--skip-bad", "--workers", "1"]) == 0
    assert "dropped 1 bad image(s)" in capsys.readouterr().out


# ------------------------------------------------------------- odd sizes, full disks, swaps


def test_odd_first_image_does_not_set_the_store_size(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=6, size=16)
    Image.fromarray(_image(0, 64)).save(folder / "images" / f"{ids[0]}.png")  # row 0 is odd
    res = prepare(folder, workers=1, skip_bad=True)
    assert (res.height, res.width, res.n_images, res.n_bad) == (16, 16, 5, 1)
    assert skipped_objids(folder) == [str(ids[0])]
    assert "64x64" in res.bad_file.read_text()


def test_images_of_another_scale_are_not_silently_cropped(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=6, size=16)
    Image.fromarray(_image(3, 40)).save(folder / "images" / f"{ids[3]}.png")
    # training straight from the folder refuses the odd image, naming it
    with pytest.raises(DataError, match=rf"{ids[3]}.png is 40x40.*16x16"):
        load_dataset(DataConfig(path=str(folder), target="metallicity", crop=8))
    # and one the sample of sizes missed is refused when it is read
    images = FolderImages([folder / "images" / f"{o}.png" for o in ids], 8, None, (16, 16))
    with pytest.raises(DataError, match=rf"{ids[3]}.png is 40x40.*16x16"):
        images[np.arange(6)]
    # so does prepare with a stored crop (the 40 px image would fit the crop)
    with pytest.raises(DataError, match=rf"1 bad image\(s\): {ids[3]}"):
        prepare(folder, crop=8, workers=1)


def test_failed_prepare_keeps_the_previous_store(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=5, size=16)
    prepare(folder, workers=1)
    with pytest.raises(DataError):
        prepare(folder, crop=500, workers=1)  # every image is smaller than the crop
    imgs = open_images(folder, ids, crop=16)
    assert isinstance(imgs, PackedImages)
    assert np.array_equal(imgs[2], _expected(2, 16, 16))


def test_prepare_checks_free_space_first(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    folder, ids = make_folder(tmp_path / "d", n=5, size=16)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(DataError, match=r"needs .* free.*space"):
        prepare(folder, workers=1)
    assert not (folder / "packed").exists()


def test_disk_full_while_packing_is_clear_and_resumable(tmp_path, monkeypatch):
    import errno

    folder, ids = make_folder(tmp_path / "d", n=10, size=16)
    real, calls = os.pwrite, []

    def pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(DataError, match=r"no space left.*re-run `sfnet prepare.*resume"):
        prepare(folder, workers=1, chunk_size=3)
    monkeypatch.setattr(os, "pwrite", real)
    res = prepare(folder, workers=1, chunk_size=3)
    assert res.resumed_chunks == 1
    imgs = open_images(folder, ids, crop=16)
    assert all(np.array_equal(imgs[i], _expected(i, 16, 16)) for i in range(10))


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if d.name.isdigit() and int(fields[1]) == pid:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
def test_sigkilled_prepare_leaves_no_worker_running(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    folder, ids = make_folder(tmp_path / "d", n=12, size=16)
    script = (
        "import sys, time\n"
        "from sfnet.data.store import prepare\n"
        "def hold(done, total):\n"
        "    print('chunk', flush=True); time.sleep(60)\n"
        "prepare(sys.argv[1], workers=2, chunk_size=1, on_chunk=hold)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "chunk"
    workers = [
        c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()
    ]
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, "prepare workers outlived their killed parent"


def test_store_index_with_duplicated_objids_is_refused(tmp_path):
    import json

    folder, ids = make_folder(tmp_path / "d", n=3, size=16)
    prepare(folder, workers=1)
    path = folder / "packed" / "native" / "index.json"
    idx = json.loads(path.read_text())
    idx["objids"][2] = idx["objids"][0]
    path.write_text(json.dumps(idx))
    with pytest.raises(DataError, match="duplicated objIDs"):
        open_images(folder, ids[:2], crop=16)


# -------------------------------------------------- stores per geometry, locks, hostile files


def test_stores_of_several_geometries_coexist_and_each_reader_picks_its_own(tmp_path):
    folder, ids = make_folder(tmp_path / "d", n=6, size=24)
    whole = prepare(folder, workers=1)
    small = prepare(folder, resize=16, workers=1)  # adds a store, keeps the first
    assert whole.store == folder / "packed" / "native"
    assert small.store == folder / "packed" / "resize16"
    assert prepare(folder, workers=1).up_to_date and prepare(folder, resize=16).up_to_date
    a = open_images(folder, ids, crop=20)
    b = open_images(folder, ids, crop=12, resize=16)
    assert isinstance(a, PackedImages) and a.path.parent == whole.store
    assert isinstance(b, PackedImages) and b.path.parent == small.store
    assert all(np.array_equal(a[i], _expected(i, 24, 20)) for i in range(6))
    direct = FolderImages([folder / "images" / f"{o}.png" for o in ids], 12, 16)
    assert np.array_equal(b[np.arange(6)], direct[np.arange(6)])
    # training on either geometry reads its own store
    cfg = DataConfig(path=str(folder), target="metallicity", crop=16, resize=16)
    assert load_dataset(cfg).images.path.parent == small.store


def test_without_a_matching_store_images_are_decoded_and_prepare_is_suggested(tmp_path, caplog):
    import logging

    folder, ids = make_folder(tmp_path / "d", n=5, size=24)
    prepare(folder, workers=1)  # whole 24 px images
    caplog.set_level(logging.INFO, logger="sfnet.data.store")
    data = load_dataset(DataConfig(path=str(folder), target="metallicity", crop=16, resize=16))
    assert isinstance(data.images, FolderImages)  # decoded, not refused
    assert data.images.shape == (5, 3, 16, 16)
    hint = [r.getMessage() for r in caplog.records if "would make it faster" in r.getMessage()]
    assert len(hint) == 1 and f"sfnet prepare {folder} --resize 16" in hint[0]
    load_dataset(DataConfig(path=str(folder), target="metallicity", crop=16, resize=16))
    assert sum("would make it faster" in r.getMessage() for r in caplog.records) == 1  # once


def test_old_single_store_layout_is_read_when_its_geometry_matches(tmp_path, caplog):
    import logging

    folder, ids = make_folder(tmp_path / "d", n=4, size=16)
    res = prepare(folder, workers=1)
    for f in res.store.iterdir():  # the layout of earlier versions: packed/images.u8
        f.rename(folder / "packed" / f.name)
    res.store.rmdir()
    imgs = open_images(folder, ids, crop=12)
    assert isinstance(imgs, PackedImages) and imgs.path == folder / "packed" / "images.u8"
    assert np.array_equal(imgs[3], _expected(3, 16, 12))
    assert prepare(folder, workers=1).up_to_date
    caplog.set_level(logging.INFO, logger="sfnet.data.store")
    other = open_images(folder, ids, crop=12, resize=20)  # another geometry: decoded
    assert isinstance(other, FolderImages)
    assert any("older layout" in r.getMessage() for r in caplog.records)
    added = prepare(folder, resize=20, workers=1)
    assert isinstance(open_images(folder, ids, crop=12, resize=20), PackedImages)
    assert (folder / "packed" / "images.u8").is_file() and added.store.is_dir()


HOLD_PREPARE = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from sfnet.data.store import prepare\n"
    "go = Path(sys.argv[2])\n"
    "def wait(done, total):\n"
    "    if done == 1:\n"
    "        print('chunk', flush=True)\n"
    "        while not go.exists(): time.sleep(0.05)\n"
    "prepare(sys.argv[1], resize=16, workers=1, chunk_size=2, on_chunk=wait)\n"
    "print('done', flush=True)\n"
)


def test_second_prepare_stops_at_once_naming_the_holder(tmp_path, capsys):
    import subprocess
    import sys

    from sfnet.cli import main

    folder, ids = make_folder(tmp_path / "d", n=6, size=24)
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2] / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_PREPARE, str(folder), str(go)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout.readline().strip() == "chunk"  # the first prepare is mid-way
        for argv in (["--resize", "20"], ["--resize", "16"], []):  # other and same geometry
            assert main(["prepare", str(folder), "--workers", "1", "--no-progress", *argv]) == 2
            err = capsys.readouterr().err
            assert f"PID {proc.pid}" in err and "sfnet prepare" in err, err
            assert len(err.strip().splitlines()) == 1
        go.touch()
        assert proc.stdout.readline().strip() == "done"  # the first one finishes unharmed
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()
    imgs = open_images(folder, ids, crop=16, resize=16)
    direct = FolderImages([folder / "images" / f"{o}.png" for o in ids], 16, 16)
    assert np.array_equal(imgs[np.arange(6)], direct[np.arange(6)])  # no black rows
    assert not (folder / "packed" / "resize20").exists()
    assert not (folder / ".packed.lock").exists()


def _png16(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr.astype(np.uint16)).save(path)


def test_16bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    grey = (np.arange(32)[None, :] * 2114).repeat(32, axis=0)  # 0 .. 65534
    path = tmp_path / "g16.png"
    _png16(path, grey)
    assert Image.open(path).mode.startswith("I;16")
    img = decode_image(path, None)
    assert img.shape == (3, 32, 32) and img.dtype == np.uint8
    assert np.abs(img[0].astype(int) - np.round(grey / 257)).max() <= 1
    assert (img == 255).mean() < 0.05  # Pillow's convert("RGB") put 97 % at 255


def test_fits_decompression_bomb_is_refused_from_its_header(tmp_path):
    import gzip
    import time

    def bomb(path: Path, shape: tuple[int, ...], data: bool) -> None:
        hdr = fits.Header(
            [("SIMPLE", True), ("BITPIX", -32), ("NAXIS", len(shape))]
            + [(f"NAXIS{k + 1}", n) for k, n in enumerate(reversed(shape))]
        )
        nbytes = int(np.prod(shape)) * 4
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(hdr.tostring().encode())
            block = bytes(1 << 22)
            left = nbytes + (-nbytes) % 2880 if data else 0
            while left:
                f.write(block[: min(left, len(block))])
                left -= min(left, len(block))

    huge = tmp_path / "huge.fits.gz"  # declares 3 x 8000^2 float32 (768 MB), holds 1 header
    bomb(huge, (3, 8000, 8000), data=False)
    real = tmp_path / "real.fits.gz"  # 53 MB of zeros in a 52 kB file: decodable, too big
    bomb(real, (3, 2100, 2100), data=True)
    assert real.stat().st_size < 300_000
    for path in (huge, real):
        t0 = time.perf_counter()
        with pytest.raises(store.BadImage, match=rf"{path.name}: FITS headers declare 3 x "):
            decode_image(path, 32)
        assert time.perf_counter() - t0 < 0.5  # not decompressed
    folder, ids = make_folder(tmp_path / "d", n=3, size=16)
    (folder / "images" / f"{ids[1]}.png").unlink()
    real.rename(folder / "images" / f"{ids[1]}.fits.gz")
    with pytest.raises(DataError, match=rf"{ids[1]}.fits.gz: FITS headers declare"):
        prepare(folder, workers=1)
