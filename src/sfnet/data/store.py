"""Image stores of a dataset folder: the folder of ``images/{objID}.jpg|png|fits`` and the
packed uint8 store written by ``sfnet prepare``.

Layout of a prepared folder::

    DATA/galaxies.csv              catalog (or .parquet / .fits)
    DATA/images/{objID}.jpg        cutouts (JPEG, PNG, or FITS with g, r, i planes)
    DATA/packed/KEY/images.u8      raw (N, 3, H, W) uint8, C order, memory-mapped
    DATA/packed/KEY/index.json     objIDs (row order), geometry, fingerprint, bad rows
    DATA/packed/KEY/bad_images.txt objIDs dropped by ``prepare --skip-bad`` (with reasons)
    DATA/packed/KEY.new/           a store being built (``images.u8.partial``, ``progress.json``);
                                   swapped in for ``packed/KEY/`` when complete
    DATA/.packed.lock              held by a running ``prepare`` (one at a time per folder)

Several stores coexist, one per geometry: ``KEY`` is :func:`geometry_key` of the ``resize``
and stored ``crop`` (``native``, ``resize64``, ``resize128-crop112``...). Training, prediction
and ``open_dataset`` pick the store of their geometry (:func:`find_store`); with none they
decode ``images/`` directly and log once that ``sfnet prepare`` would make it faster. A store
of the older single-store layout (``DATA/packed/images.u8`` + ``index.json``) is read when
its geometry matches.

Geometry: every image is resized to ``resize`` x ``resize`` pixels when ``resize`` is set
(bicubic, Pillow) and then centre-cropped to ``crop`` x ``crop`` (offset ``(size - crop) // 2``).
``prepare`` with ``crop=None`` keeps the whole (resized) image, so one packed store serves any
training crop; :func:`open_images` crops on read.

FITS cutouts are mapped to RGB with astropy's Lupton et al. (2004) asinh stretch
(:func:`astropy.visualization.make_lupton_rgb`, R = i, G = r, B = g scaled by
:data:`LUPTON_RGB_SCALES`, parameters :data:`LUPTON_STRETCH`, :data:`LUPTON_Q`,
:data:`LUPTON_MINIMUM`, in the image's flux units, e.g. nanomaggies; the synthetic survey's
mapping) and flipped so that row 0 is the top, as in the survey JPEGs.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sfnet.config import ConfigError, check_fields, setting
from sfnet.errors import DataError
from sfnet.io import remove_tree, replace_dir
from sfnet.progress import progress_bar

#: Image file extensions recognised in ``images/`` (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".fits", ".fit", ".fits.gz", ".fit.gz")
#: Sub-folders / files of a dataset folder.
IMAGES_DIR = "images"
PACKED_DIR = "packed"
#: Suffix of the folder where ``prepare`` builds a store before swapping it in
#: (``packed/KEY.new`` for ``packed/KEY``).
BUILD_SUFFIX = ".new"
PACKED_DATA = "images.u8"
PACKED_INDEX = "index.json"
PACKED_PARTIAL = "images.u8.partial"
PACKED_PROGRESS = "progress.json"
BAD_IMAGES_FILE = "bad_images.txt"
STORE_VERSION = 1

#: Lupton asinh mapping of FITS g, r, i planes (flux units of the file, e.g. nanomaggies),
#: the same as the synthetic survey (``sfnet.data.synthetic``): R, G, B = i, r, g times
#: :data:`LUPTON_RGB_SCALES`, then ``make_lupton_rgb(minimum, stretch, Q)``.
LUPTON_RGB_SCALES = (0.75, 1.0, 1.6)
LUPTON_STRETCH = 0.4
LUPTON_Q = 6.0
LUPTON_MINIMUM = 0.0

_LIST_LIMIT = 20
log = logging.getLogger(__name__)

#: Largest FITS cutout accepted, in pixels over all image HDUs (3 planes of 2048 x 2048),
#: checked from the headers before any pixel is read, so a small compressed file declaring a
#: huge image (a decompression bomb) is refused at once.
MAX_FITS_PIXELS = 3 * 2048 * 2048


# --------------------------------------------------------------------------------- decoding


class BadImage(Exception):
    """An image that cannot be used (missing, undecodable, wrong size); carries the reason."""


def _strip_ext(name: str) -> tuple[str, str] | None:
    low = name.lower()
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if low.endswith(ext):
            return name[: -len(ext)], ext
    return None


def image_index(folder: Path) -> dict[str, Path]:
    """Map objID text -> image path for every image file in ``folder/images``.

    Raises:
        DataError: no ``images/`` folder, or two files for one objID (e.g. ``.jpg`` and ``.png``).
    """
    d = Path(folder) / IMAGES_DIR
    if not d.is_dir():
        raise DataError(f"{folder}: no {IMAGES_DIR}/ folder with the cutouts")
    out: dict[str, Path] = {}
    with os.scandir(d) as it:
        for e in it:
            if e.name.startswith(".") or not e.is_file():
                continue
            parsed = _strip_ext(e.name)
            if parsed is None:
                continue
            stem = parsed[0]
            if stem in out:
                raise DataError(f"{d}: two images for objID {stem}: {out[stem].name} and {e.name}")
            out[stem] = d / e.name
    return out


def fits_to_rgb(planes: np.ndarray) -> np.ndarray:
    """Map (3, H, W) g, r, i flux planes to (H, W, 3) uint8 RGB (Lupton asinh, row 0 on top)."""
    from astropy.visualization import make_lupton_rgb

    g, r, i = (np.nan_to_num(np.asarray(p, dtype=np.float64)) for p in planes)
    si, sr, sg = LUPTON_RGB_SCALES
    rgb = make_lupton_rgb(
        si * i, sr * r, sg * g, minimum=LUPTON_MINIMUM, stretch=LUPTON_STRETCH, Q=LUPTON_Q
    )
    return np.ascontiguousarray(rgb[::-1])


def check_fits_size(path: Path) -> None:
    """Refuse a FITS file whose headers declare more than :data:`MAX_FITS_PIXELS` pixels.

    Reads the headers one by one from the (possibly gzip-compressed) stream and skips the data
    they declare, stopping as soon as the declared total is too large: a small ``.fits.gz``
    declaring a huge image (a decompression bomb) is refused before it is decompressed.

    Raises:
        BadImage: too large, or a header that cannot be read (the message names the file).
    """
    import gzip

    from astropy.io import fits

    path = Path(path)
    total, shapes = 0, []
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            while True:
                try:
                    header = fits.Header.fromfile(f, endcard=True, padding=True)
                except EOFError:
                    break
                z = "Z" if header.get("ZIMAGE") else ""
                naxis = int(header.get(f"{z}NAXIS", 0))
                dims = [int(header[f"{z}NAXIS{k}"]) for k in range(1, naxis + 1)]
                if dims and min(dims) < 0:
                    raise ValueError(f"negative size {dims}")
                n = int(np.prod(dims, dtype=object)) if dims else 0
                total += n
                shapes.append(" x ".join(str(d) for d in reversed(dims)))
                if total > MAX_FITS_PIXELS:
                    raise BadImage(
                        f"{path.name}: FITS headers declare {' + '.join(shapes)} pixels, more "
                        f"than the {MAX_FITS_PIXELS:,} a cutout may have; refused before "
                        "decompressing (cut a smaller cutout)"
                    )
                if z or header.get("XTENSION", "IMAGE").strip() != "IMAGE":  # table bytes
                    rows = [int(header.get(f"NAXIS{k}", 0)) for k in (1, 2)]
                    nbytes = rows[0] * rows[1] + int(header.get("PCOUNT", 0))
                else:
                    nbytes = n * abs(int(header.get("BITPIX", 8))) // 8
                f.seek(nbytes + (-nbytes) % 2880, 1)
    except BadImage:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        raise BadImage(
            f"{path.name}: cannot read the FITS headers ({type(e).__name__}: {e})"
        ) from None


def _read_fits_planes(path: Path) -> np.ndarray:
    from astropy.io import fits

    check_fits_size(path)  # headers only: sizes checked before any pixel is read
    with fits.open(path, memmap=False) as hdul:
        cubes = [h for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) == 3]
        if cubes:
            h = cubes[0]
            data = np.asarray(h.data)
            bands = str(h.header.get("BANDS", "")).strip().lower()
            if bands and len(bands) == data.shape[0]:
                red = "i" if "i" in bands else "z"
                if "g" not in bands or "r" not in bands or red not in bands:
                    raise BadImage(f"FITS bands {bands!r} lack g, r and i (or z)")
                return np.stack([data[bands.index(b)] for b in ("g", "r", red)])
            if data.shape[0] != 3:
                raise BadImage(f"FITS cube has {data.shape[0]} planes, expected 3 (g, r, i)")
            return data
        planes = [np.asarray(h.data) for h in hdul if h.data is not None and h.data.ndim == 2]
        if len(planes) < 3:
            raise BadImage(f"FITS file has {len(planes)} image plane(s), expected 3 (g, r, i)")
        if len({p.shape for p in planes[:3]}) != 1:
            raise BadImage("FITS g, r, i planes differ in shape")
        return np.stack(planes[:3])


def _to_rgb8(im: Any, path: Path) -> Any:
    """An 8-bit RGB Pillow image from a JPEG/PNG of any mode.

    16-bit images (PNG grey ``I;16``, which Pillow's ``convert("RGB")`` would clip at 255) are
    scaled to 8 bits by 65535 -> 255 (divide by 257, rounded); 16-bit RGB PNGs Pillow already
    reads as 8-bit RGB (the high byte). 32-bit integer or float images are refused.

    Raises:
        BadImage: a 32-bit integer or float image, or a 16-bit one with values out of range.
    """
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise BadImage(
                f"{path.name}: {im.mode} image with values {arr.min()}..{arr.max()} outside "
                "0..65535; save it as 8-bit RGB (or FITS)"
            )
        grey = ((arr * 255 + 32767) // 65535).astype(np.uint8)  # 16 -> 8 bits, rounded
        return Image.fromarray(grey, mode="L").convert("RGB")
    if im.mode in ("F", "I;32", "I;32B", "I;32L"):
        raise BadImage(
            f"{path.name}: {im.mode} (32-bit) image; sfnet reads 8- or 16-bit JPEG/PNG - save it "
            "as 8-bit RGB (or as FITS with g, r, i planes)"
        )
    return im.convert("RGB")


def decode_image(
    path: Path,
    crop: int | None,
    resize: int | None = None,
    expect: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode one cutout to (3, H, W) uint8, resized and centre-cropped.

    Args:
        path: JPEG / PNG (RGB; grey or RGBA converted) or FITS (g, r, i planes).
        crop: side of the centre crop (pixels) or None for the whole image.
        resize: resize to ``resize`` x ``resize`` (bicubic) first when the size differs.
        expect: (H, W) the image must have after ``resize`` and before the crop (the size of
            the other images), so an image of another scale is refused, not silently cropped.

    Raises:
        BadImage: unreadable file, image of another size than ``expect``, or smaller than
            ``crop``.
    """
    from PIL import Image

    path = Path(path)
    try:
        parsed = _strip_ext(path.name)
        if parsed is not None and parsed[1].startswith(".fit"):
            img = Image.fromarray(fits_to_rgb(_read_fits_planes(path)), mode="RGB")
        else:
            with Image.open(path) as im:
                img = _to_rgb8(im, path)
    except BadImage:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure means a bad image
        raise BadImage(f"cannot decode {path.name}: {type(e).__name__}: {e}") from None
    if resize is not None and img.size != (resize, resize):
        img = img.resize((resize, resize), Image.Resampling.BICUBIC)
    arr = np.asarray(img)  # (H, W, 3)
    h, w = arr.shape[:2]
    if expect is not None and (h, w) != tuple(expect):
        raise BadImage(
            f"{path.name} is {w}x{h} px, not {expect[1]}x{expect[0]} like most images "
            "(pass --resize, or --skip-bad to prepare without it)"
        )
    if crop is not None:
        if crop > h or crop > w:
            raise BadImage(f"{path.name} is {w}x{h} px, smaller than the crop {crop}")
        y0, x0 = (h - crop) // 2, (w - crop) // 2
        arr = arr[y0 : y0 + crop, x0 : x0 + crop]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, from its header where the format allows.

    Raises:
        BadImage: unreadable file.
    """
    from PIL import Image

    path = Path(path)
    parsed = _strip_ext(path.name)
    if parsed is not None and parsed[1].startswith(".fit"):
        planes = _read_fits_planes(path)
        return int(planes.shape[1]), int(planes.shape[2])
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as e:  # noqa: BLE001 - any decoder failure means a bad image
        raise BadImage(f"cannot decode {path.name}: {type(e).__name__}: {e}") from None
    return int(h), int(w)


def majority_size(
    paths: Sequence[Path], sample: int = 64
) -> tuple[tuple[int, int] | None, list[tuple[Path, tuple[int, int]]]]:
    """The most common (H, W) among up to ``sample`` evenly spaced images, and the others.

    Returns:
        (size or None when no sampled image is readable, [(path, size) of sampled images of
        another size]).
    """
    paths = list(paths)
    step = max(1, len(paths) // sample)
    sizes: dict[Path, tuple[int, int]] = {}
    for p in paths[::step][:sample]:
        try:
            sizes[Path(p)] = image_size(p)
        except BadImage:
            continue
    if not sizes:
        return None, []
    size = Counter(sizes.values()).most_common(1)[0][0]
    return size, [(p, s) for p, s in sizes.items() if s != size]


# ------------------------------------------------------------------------------ fingerprint


def fingerprint(folder: Path) -> str:
    """Cheap 16-hex fingerprint of a dataset folder.

    Hashes the catalog file's bytes and the name, size and modification time of every image
    file (image contents are not read), so it changes when any of them is replaced.
    """
    from sfnet.data.catalog import find_catalog

    folder = Path(folder)
    h = hashlib.sha256()
    cat = find_catalog(folder)
    h.update(cat.name.encode())
    with open(cat, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    entries = []
    d = folder / IMAGES_DIR
    if d.is_dir():
        with os.scandir(d) as it:
            for e in it:
                if e.name.startswith(".") or not e.is_file() or _strip_ext(e.name) is None:
                    continue
                st = e.stat()
                entries.append(f"{e.name}\t{st.st_size}\t{st.st_mtime_ns}")
    entries.sort()
    h.update("\n".join(entries).encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- image arrays


class PackedImages:
    """Images read from the packed store (memory-mapped), in the order of the requested objIDs.

    ``images[idx]`` -> (n, 3, crop, crop) uint8 for an int array ``idx``; ``images[i]`` ->
    (3, crop, crop). Pickles without its data (workers re-open the memory map).
    """

    def __init__(
        self, path: Path, n_rows: int, height: int, width: int, rows: np.ndarray, crop: int
    ) -> None:
        self.path = Path(path)
        self._n_rows, self._h, self._w = n_rows, height, width
        self._rows = np.asarray(rows, dtype=np.int64)
        self._crop = crop
        self._y0, self._x0 = (height - crop) // 2, (width - crop) // 2
        self._full = crop == height == width
        self.shape = (len(self._rows), 3, crop, crop)
        self._mm: np.ndarray | None = None

    def _map(self) -> np.ndarray:
        if self._mm is None:
            self._mm = np.memmap(
                self.path, dtype=np.uint8, mode="r", shape=(self._n_rows, 3, self._h, self._w)
            )
        return self._mm

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_mm"] = None
        return state

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: Any) -> np.ndarray:
        if np.isscalar(idx):
            return self[np.array([idx])][0]
        rows = self._rows[np.arange(len(self))[idx] if isinstance(idx, slice) else idx]
        rows = np.atleast_1d(rows)
        order = np.argsort(rows, kind="stable")
        mm = self._map()
        c, y0, x0 = self._crop, self._y0, self._x0
        out = np.empty((len(rows), 3, c, c), dtype=np.uint8)
        if self._full:
            out[order] = mm[rows[order]]
        else:
            out[order] = mm[rows[order], :, y0 : y0 + c, x0 : x0 + c]
        return out


class FolderImages:
    """Images decoded from ``images/`` on access (slow path: decode + resize + crop each time).

    ``images[idx]`` -> (n, 3, crop, crop) uint8; raises DataError naming a file that fails or
    (with ``expect``) that has another size than the others.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        crop: int,
        resize: int | None,
        expect: tuple[int, int] | None = None,
    ) -> None:
        self._paths = list(paths)
        self._crop, self._resize, self._expect = crop, resize, expect
        self.shape = (len(self._paths), 3, crop, crop)

    def __len__(self) -> int:
        return self.shape[0]

    def _one(self, i: int) -> np.ndarray:
        try:
            return decode_image(self._paths[i], self._crop, self._resize, self._expect)
        except BadImage as e:
            raise DataError(f"{self._paths[i]}: {e}") from None

    def __getitem__(self, idx: Any) -> np.ndarray:
        if np.isscalar(idx):
            return self._one(int(idx))
        sel = np.arange(len(self))[idx] if isinstance(idx, slice) else np.atleast_1d(idx)
        out = np.empty((len(sel), 3, self._crop, self._crop), dtype=np.uint8)
        for j, i in enumerate(sel):
            out[j] = self._one(int(i))
        return out


def _format_ids(ids: Sequence[str]) -> str:
    shown = ", ".join(str(i) for i in list(ids)[:_LIST_LIMIT])
    more = f" (first {_LIST_LIMIT} shown)" if len(ids) > _LIST_LIMIT else ""
    return f"{len(ids)} objID(s): {shown}{more}"


def geometry_key(resize: int | None, crop: int | None) -> str:
    """Name of the store folder ``packed/KEY`` of one geometry: ``native``, ``resize64``,
    ``native-crop144``, ``resize128-crop112``."""
    key = f"resize{int(resize)}" if resize is not None else "native"
    return key + (f"-crop{int(crop)}" if crop is not None else "")


def store_dir(folder: Path, resize: int | None, crop: int | None) -> Path:
    """Where ``prepare(folder, crop, resize)`` puts its store: ``folder/packed/KEY``."""
    return Path(folder) / PACKED_DIR / geometry_key(resize, crop)


def _read_index(store: Path) -> dict[str, Any] | None:
    """The index of the store folder ``store`` (``packed/KEY`` or an old-layout ``packed``),
    None when it has none.

    Raises:
        DataError: unreadable or inconsistent index.
    """
    p = Path(store) / PACKED_INDEX
    if not p.is_file():
        return None
    try:
        idx = json.loads(p.read_text())
        if not isinstance(idx, dict):
            raise ValueError("not a JSON object")
        if idx.get("version") != STORE_VERSION:
            raise ValueError(f"store version {idx.get('version')} (expected {STORE_VERSION})")
        for key in ("n", "height", "width", "fingerprint", "objids", "bad_rows"):
            if key not in idx:
                raise ValueError(f"no {key!r}")
        if len(set(idx["objids"])) != len(idx["objids"]):
            raise ValueError("duplicated objIDs")
    except (ValueError, OSError) as e:
        raise DataError(
            f"{p}: unreadable packed-store index ({e}); re-run `sfnet prepare`"
        ) from None
    return idx


def _old_layout(folder: Path, crop: int, resize: int | None) -> tuple[Path, dict] | None:
    """The store of the older single-store layout (``packed/index.json``) when its geometry
    serves (``resize``, ``crop``); logs why not otherwise."""
    packed = Path(folder) / PACKED_DIR
    idx = _read_index(packed)
    if idx is None:
        return None
    if idx.get("resize") == resize and idx.get("crop") in (None, crop):
        return packed, idx
    _log_once(
        (str(packed), "old"),
        "%s: a packed store of the older layout, made with resize=%s crop=%s, does not serve "
        "resize=%s crop=%s; `sfnet prepare %s%s` adds one that does",
        packed,
        idx.get("resize"),
        idx.get("crop"),
        resize,
        crop,
        folder,
        f" --resize {resize}" if resize else "",
    )
    return None


def find_store(
    folder: Path, crop: int | None, resize: int | None
) -> tuple[Path, dict[str, Any]] | None:
    """The packed store of ``folder`` that serves images resized to ``resize`` and
    centre-cropped to ``crop`` (None: whole images), and its index; None when there is none.

    Preference: the store of exactly that crop (``packed/resizeR-cropC``), then the store of
    whole images (``packed/resizeR``, cropped on read), then an old-layout ``packed/`` of that
    geometry. Freshness is not checked here (:func:`open_images` does).

    Raises:
        DataError: the chosen store's index is unreadable.
    """
    folder = Path(folder)
    keys = [geometry_key(resize, crop)] + ([geometry_key(resize, None)] if crop else [])
    for key in keys:
        path = folder / PACKED_DIR / key
        idx = _read_index(path)
        if idx is not None:
            return path, idx
    return _old_layout(folder, crop, resize)


def stored_side(folder: Path, resize: int | None = None) -> int | None:
    """Side in pixels of the whole images in the store for ``resize`` (None when none)."""
    found = find_store(folder, None, resize)
    if found is None:
        return None
    idx = found[1]
    return int(idx.get("crop") or min(idx["height"], idx["width"]))


def skipped_objids(folder: Path, crop: int | None = None, resize: int | None = None) -> list[str]:
    """objIDs (as text) that ``prepare --skip-bad`` dropped from the store that serves
    (``resize``, ``crop``) (:func:`find_store`); [] if none."""
    found = find_store(folder, crop, resize)
    if found is None:
        return []
    idx = found[1]
    return [idx["objids"][r] for r in idx["bad_rows"]]


_LOGGED: set[tuple[str, str]] = set()


def _log_once(key: tuple[str, str], msg: str, *args: Any) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.info(msg, *args)


def open_images(
    folder: Path,
    objids: Sequence,
    crop: int = 144,
    resize: int | None = None,
    folder_fingerprint: str | None = None,
) -> Any:
    """Images of ``objids`` (in that order) from a dataset folder, centre-cropped to ``crop``.

    Uses the packed store of this geometry (:func:`find_store`) when there is one; it must be
    fresh (fingerprint of catalog + images unchanged). Without one, decodes from ``images/``
    on access (and logs once that ``sfnet prepare`` would make it faster).

    ``folder_fingerprint``: the folder's :func:`fingerprint` when the caller already has it
    (it stats every image file, so it is computed once per load).

    Returns:
        :class:`PackedImages` or :class:`FolderImages`: ``len()``, ``.shape`` (N, 3, crop, crop),
        ``[idx] -> (n, 3, crop, crop) uint8``.

    Raises:
        DataError: stale or incomplete packed store of this geometry; missing images; crop
            larger than the images.
    """
    folder = Path(folder)
    keys = [str(o) for o in objids]
    found = find_store(folder, crop, resize)
    if found is not None:
        fp = folder_fingerprint or fingerprint(folder)
        return _open_packed(folder, found[0], found[1], keys, crop, resize, fp)
    for key in {geometry_key(resize, crop), geometry_key(resize, None)}:
        build = folder / PACKED_DIR / (key + BUILD_SUFFIX)
        if (build / PACKED_PROGRESS).exists() or (build / PACKED_PARTIAL).exists():
            raise DataError(
                f"{build}: the packed store is incomplete (an interrupted `sfnet prepare`); "
                f"re-run `sfnet prepare {folder}{_flags(resize, None)}` to finish it, or "
                f"delete {build}"
            )
    index = image_index(folder)
    missing = [k for k in keys if k not in index]
    if missing:
        raise DataError(f"{folder / IMAGES_DIR}: no image for {_format_ids(missing)}")
    paths = [index[k] for k in keys]
    expect = _folder_size(paths, resize, folder)
    if paths:
        try:
            decode_image(paths[0], crop, resize, expect)
        except BadImage as e:
            raise DataError(f"{paths[0]}: {e}") from None
    _log_once(
        (str(folder.resolve()), geometry_key(resize, crop)),
        "%s: no packed store for resize=%s crop=%s, decoding the images on every read; "
        "`sfnet prepare %s%s` would make it faster",
        folder,
        resize,
        crop,
        folder,
        _flags(resize, None),
    )
    return FolderImages(paths, crop, resize, expect)


def _flags(resize: int | None, crop: int | None) -> str:
    return (f" --resize {resize}" if resize else "") + (f" --crop {crop}" if crop else "")


def _folder_size(paths: list[Path], resize: int | None, folder: Path) -> tuple[int, int] | None:
    """The common size of a folder's images (None with ``resize``); mixed sizes refused."""
    if resize is not None or not paths:
        return None
    size, odd = majority_size(paths)
    if odd:
        p, (h, w) = odd[0]
        raise DataError(
            f"{folder / IMAGES_DIR}: images of different sizes ({p.name} is {w}x{h} px, most "
            f"are {size[1]}x{size[0]}); centre crops would differ in scale - pass --resize, or "
            f"`sfnet prepare {folder} --skip-bad` to drop the odd ones"
        )
    return size


def _open_packed(
    folder: Path,
    packed: Path,
    idx: dict[str, Any],
    keys: list[str],
    crop: int,
    resize: int | None,
    fp: str,
) -> PackedImages:
    redo = f"re-run `sfnet prepare {folder}{_flags(idx.get('resize'), idx.get('crop'))}`"
    if idx["fingerprint"] != fp:
        raise DataError(
            f"{packed}: the packed store is stale (catalog or images changed since "
            f"`sfnet prepare`); {redo} (or delete {packed} to read the image folder directly)"
        )
    h, w = int(idx["height"]), int(idx["width"])
    if crop > h or crop > w:
        raise DataError(
            f"{packed}: crop {crop} is larger than the stored {w}x{h} px images; ask for a "
            f"crop <= {min(h, w)} or re-run `sfnet prepare {folder} --resize N` with N >= {crop}"
        )
    data = packed / PACKED_DATA
    n = int(idx["n"])
    if not data.is_file() or data.stat().st_size != n * 3 * h * w:
        raise DataError(f"{data}: missing or wrong size for {n} x 3 x {h} x {w}; {redo}")
    bad = set(idx["bad_rows"])
    row_of = {k: r for r, k in enumerate(idx["objids"]) if r not in bad}
    missing = [k for k in keys if k not in row_of]
    if missing:
        stored = set(idx["objids"])
        dropped = [k for k in missing if k in stored]
        why = (
            f" ({len(dropped)} dropped by --skip-bad, see {packed / BAD_IMAGES_FILE})"
            if dropped
            else ""
        )
        raise DataError(f"{packed}: not in the packed store: {_format_ids(missing)}{why}")
    rows = np.array([row_of[k] for k in keys], dtype=np.int64)
    # A stored crop equal to ``crop`` is used as is; a whole image is cropped with the same
    # offset (size - crop) // 2 as a direct crop would use.
    return PackedImages(data, n, h, w, rows, crop)


# ---------------------------------------------------------------------------------- prepare


@dataclass
class PrepareConfig:
    """Settings of :func:`prepare` (``sfnet prepare``'s options are generated from these fields).

    Each field is a :func:`~sfnet.config.setting` (its help says what it is).
    """

    crop: int | None = setting(
        None,
        "store only this centre crop (px); none keeps whole images, so any training --crop "
        "works later",
        ge=1,
    )
    resize: int | None = setting(
        None, "resize every image to this side (px) first; must then match training --resize", ge=1
    )
    workers: int | None = setting(None, "decoding processes (none: all cores)", ge=1)
    skip_bad: bool = setting(
        False,
        "drop missing/corrupt images (counted, listed in the store's bad_images.txt) instead of "
        "stopping",
    )

    def validate(self) -> None:
        """Check every field against its declared type and range, and ``crop <= resize``.

        Raises:
            ConfigError: naming ``prepare.FIELD``.
        """
        check_fields(self, "prepare")
        if self.crop is not None and self.resize is not None and self.crop > self.resize:
            raise ConfigError(
                f"prepare.crop ({self.crop}) must not exceed prepare.resize ({self.resize})"
            )


@dataclass
class PrepareResult:
    """What ``prepare`` did.

    Attributes:
        store: the store folder (``packed/KEY``, :func:`geometry_key`).
        n_images: images in the store (bad ones excluded).
        n_bad: images dropped (``skip_bad``), listed in ``bad_file``.
        bad_file: the store's ``bad_images.txt`` or None.
        height, width: stored image size (pixels).
        crop, resize: the geometry asked for (None = whole image / stored size).
        fingerprint: of catalog + images.
        resumed_chunks: chunks found done by an interrupted earlier run.
        up_to_date: True when a fresh store of this geometry already existed (nothing done).
        seconds: wall time.
    """

    store: Path
    n_images: int
    n_bad: int
    bad_file: Path | None
    height: int
    width: int
    crop: int | None
    resize: int | None
    fingerprint: str
    resumed_chunks: int = 0
    up_to_date: bool = False
    seconds: float = 0.0


@dataclass
class _Plan:
    """What one ``prepare`` builds: rows, geometry and where (``packed/KEY.new``)."""

    folder: Path
    keys: list[str]
    index: dict[str, Path]
    fingerprint: str
    catalog: str
    crop: int | None
    resize: int | None
    source: tuple[int, int]  # every image's (H, W) after resize, before the crop
    height: int
    width: int
    chunk_size: int

    @property
    def store(self) -> Path:
        return store_dir(self.folder, self.resize, self.crop)

    @property
    def build(self) -> Path:
        return self.store.with_name(self.store.name + BUILD_SUFFIX)

    @property
    def nbytes(self) -> int:
        return len(self.keys) * 3 * self.height * self.width

    @property
    def chunks(self) -> list[list[int]]:
        n, c = len(self.keys), self.chunk_size
        return [list(range(s, min(s + c, n))) for s in range(0, n, c)]

    def geometry(self) -> dict[str, Any]:
        return {
            "n": len(self.keys),
            "height": self.height,
            "width": self.width,
            "source": list(self.source),
            "crop": self.crop,
            "resize": self.resize,
            "chunk_size": self.chunk_size,
            "fingerprint": self.fingerprint,
        }


def prepare(
    folder: Path,
    crop: int | None = None,
    resize: int | None = None,
    workers: int | None = None,
    skip_bad: bool = False,
    progress: bool = False,
    chunk_size: int = 256,
    on_chunk: Callable[[int, int], None] | None = None,
) -> PrepareResult:
    """Decode every catalog image once into the packed store of this geometry,
    ``folder/packed/KEY`` (:func:`geometry_key`); stores of other geometries are kept.

    The store is (N, 3, H, W) uint8 in catalog row order (H = W = ``crop``, else ``resize``,
    else the size most images have; images of another size are bad, never silently cropped).
    It is built in ``packed/KEY.new`` (chunks decoded by ``workers`` processes, default all
    cores; progress saved after each chunk so an interrupted or failed run resumes), and swapped
    in atomically when complete: until then the previous complete store of that geometry stays
    usable. Free disk space is checked before anything is written. One ``prepare`` at a time
    per dataset folder: it holds the lock ``folder/.packed.lock`` (:mod:`sfnet.lock`).

    Args:
        folder: dataset folder (catalog + ``images/``).
        crop: centre crop stored (pixels); None keeps whole images (any crop works later).
        resize: resize side (pixels) before cropping; None keeps the images' size.
        workers: decoding processes; 1 decodes in this process.
        skip_bad: drop missing/corrupt/odd-sized images (counted, listed in
            the store's ``bad_images.txt``) instead of failing.
        progress: show a tqdm progress bar.
        chunk_size: images per work unit (and per progress checkpoint).
        on_chunk: called as ``on_chunk(done_chunks, total_chunks)`` after each chunk.

    Raises:
        ConfigError: a setting outside its :class:`PrepareConfig` range (or crop > resize).
        DataError: missing or bad images without ``skip_bad`` (first 20 objIDs and the count),
            no decodable image, not enough disk space (before or while writing).
        FolderBusyError: another ``prepare`` is running on this folder (named in the message).
    """
    t0 = time.perf_counter()
    folder = Path(folder)
    PrepareConfig(crop=crop, resize=resize, workers=workers, skip_bad=skip_bad).validate()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such dataset folder")
    from sfnet.lock import folder_lock

    with folder_lock(folder / PACKED_DIR, "sfnet prepare", follow_symlink=True):
        keys, index, fp, cat_name = _scan(folder, skip_bad)
        done_already = _existing_store(folder, fp, crop, resize, skip_bad)
        if done_already is not None:
            done_already.seconds = time.perf_counter() - t0
            return done_already
        source = _source_size(keys, index, resize, folder)
        h, w = (crop, crop) if crop is not None else source
        plan = _Plan(folder, keys, index, fp, cat_name, crop, resize, source, h, w, chunk_size)
        done, bad = _start_or_resume(plan)
        resumed = len(done)
        _decode_chunks(plan, done, bad, workers, progress, on_chunk)
        bad_rows = _finish(plan, bad, skip_bad)
    return PrepareResult(
        store=plan.store,
        n_images=len(keys) - len(bad_rows),
        n_bad=len(bad_rows),
        bad_file=plan.store / BAD_IMAGES_FILE if bad_rows else None,
        height=h,
        width=w,
        crop=crop,
        resize=resize,
        fingerprint=fp,
        resumed_chunks=resumed,
        seconds=time.perf_counter() - t0,
    )


def _scan(folder: Path, skip_bad: bool) -> tuple[list[str], dict[str, Path], str, str]:
    """(objIDs as text, image index, fingerprint, catalog name); missing images refused."""
    from sfnet.data.catalog import find_catalog, read_catalog

    cat_path = find_catalog(folder)
    keys = [str(o) for o in read_catalog(cat_path)["objID"].to_numpy()]
    index = image_index(folder)
    missing = [k for k in keys if k not in index]
    if missing and not skip_bad:
        raise DataError(
            f"{folder / IMAGES_DIR}: no image for {_format_ids(missing)}; "
            "add them or pass --skip-bad to drop them"
        )
    return keys, index, fingerprint(folder), cat_path.name


def _existing_store(
    folder: Path, fp: str, crop: int | None, resize: int | None, skip_bad: bool
) -> PrepareResult | None:
    """The result for a fresh store of this geometry that already exists (also one of the
    older single-store layout), else None."""
    for packed in (store_dir(folder, resize, crop), folder / PACKED_DIR):
        try:
            old = _read_index(packed)
        except DataError:  # an unreadable index is simply replaced
            continue
        if (
            old is not None
            and old["fingerprint"] == fp
            and old.get("crop") == crop
            and old.get("resize") == resize
            and not (old["bad_rows"] and not skip_bad)
            and (packed / PACKED_DATA).is_file()
        ):
            break
    else:
        return None
    n_bad = len(old["bad_rows"])
    bad_file = packed / BAD_IMAGES_FILE
    return PrepareResult(
        store=packed,
        n_images=int(old["n"]) - n_bad,
        n_bad=n_bad,
        bad_file=(bad_file if bad_file.is_file() else folder / BAD_IMAGES_FILE) if n_bad else None,
        height=int(old["height"]),
        width=int(old["width"]),
        crop=crop,
        resize=resize,
        fingerprint=fp,
        up_to_date=True,
    )


def _source_size(
    keys: list[str], index: dict[str, Path], resize: int | None, folder: Path
) -> tuple[int, int]:
    """(H, W) of the images before the crop: ``resize``, else the most common size."""
    if resize is not None:
        return resize, resize
    paths = [index[k] for k in keys if k in index]
    size, _ = majority_size(paths)
    if size is None:
        raise DataError(f"{folder / IMAGES_DIR}: no decodable image for any catalog objID")
    return size


def _start_or_resume(plan: _Plan) -> tuple[set[int], dict[int, str]]:
    """Reuse the progress of an interrupted build of the same plan, or start a new build.

    Raises:
        DataError: the disk has less free space than the store still needs.
    """
    build, n_bytes = plan.build, plan.nbytes
    partial, prog_path = build / PACKED_PARTIAL, build / PACKED_PROGRESS
    prog = _load_progress(prog_path)
    if (
        prog is not None
        and prog.get("geometry") == plan.geometry()
        and partial.is_file()
        and partial.stat().st_size == n_bytes
    ):
        _check_space(build, n_bytes - partial.stat().st_blocks * 512, plan.folder)
        return set(prog["done"]), {int(r): s for r, s in prog["bad"].items()}
    remove_tree(build)
    _check_space(plan.folder, n_bytes, plan.folder)
    build.mkdir(parents=True)
    with open(partial, "wb") as f:
        f.truncate(n_bytes)
    return set(), {}


def _check_space(where: Path, needed: int, folder: Path) -> None:
    free = shutil.disk_usage(where).free
    if needed > free:
        raise DataError(
            f"{folder}: the packed store needs {_gb(needed)} more but only {_gb(free)} is free; "
            f"free some space (or pass --crop / --resize for a smaller store) and re-run "
            f"`sfnet prepare {folder}`"
        )


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _decode_chunks(
    plan: _Plan,
    done: set[int],
    bad: dict[int, str],
    workers: int | None,
    progress: bool,
    on_chunk: Callable[[int, int], None] | None,
) -> None:
    """Decode the chunks not yet done into the partial file, saving progress after each."""
    from sfnet.io import atomic_write_json

    chunks, keys, index = plan.chunks, plan.keys, plan.index
    partial, prog_path = plan.build / PACKED_PARTIAL, plan.build / PACKED_PROGRESS
    shape = (len(keys), 3, plan.height, plan.width)
    todo = [c for c in range(len(chunks)) if c not in done]
    tasks = [
        (
            str(partial),
            shape,
            [(r, str(index[keys[r]]) if keys[r] in index else None) for r in chunks[c]],
            plan.crop,
            plan.resize,
            plan.source,
        )
        for c in todo
    ]
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    initial = sum(len(chunks[c]) for c in done)
    bar = progress_bar(progress, len(keys), "prepare", "img", initial=initial)
    try:
        for c, chunk_bad in zip(todo, _run_tasks(tasks, n_workers), strict=True):
            done.add(c)
            bad.update(chunk_bad)
            state = {"done": sorted(done), "bad": {str(r): m for r, m in bad.items()}}
            atomic_write_json(prog_path, {"geometry": plan.geometry(), **state})
            bar.update(len(chunks[c]))
            if on_chunk is not None:
                on_chunk(len(done), len(chunks))
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DataError(
            f"{partial}: no space left on the device after {len(done)} of {len(chunks)} "
            f"chunks; free some space and re-run `sfnet prepare {plan.folder}` (it resumes "
            "from the finished chunks)"
        ) from None
    finally:
        bar.close()


def _finish(plan: _Plan, bad: dict[int, str], skip_bad: bool) -> list[int]:
    """Refuse bad images (unless ``skip_bad``), write the index and swap the store in."""
    from sfnet.io import atomic_write_bytes, atomic_write_json

    keys, folder, n = plan.keys, plan.folder, len(plan.keys)
    bad_rows = sorted(bad)
    if bad_rows and not skip_bad:
        lines = [f"{keys[r]} ({bad[r]})" for r in bad_rows[:_LIST_LIMIT]]
        more = f" (first {_LIST_LIMIT} shown)" if len(bad_rows) > _LIST_LIMIT else ""
        raise DataError(
            f"{folder / IMAGES_DIR}: {len(bad_rows)} bad image(s){more}: {'; '.join(lines)}; "
            "fix them or pass --skip-bad to drop them"
        )
    if len(bad_rows) == n:
        raise DataError(f"{folder / IMAGES_DIR}: no usable image ({bad[bad_rows[0]]})")
    build = plan.build
    with open(build / PACKED_PARTIAL, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(build / PACKED_PARTIAL, build / PACKED_DATA)
    index = {"version": STORE_VERSION, **plan.geometry(), "skip_bad": skip_bad}
    index.update(catalog=plan.catalog, bad_rows=bad_rows, objids=keys)
    atomic_write_json(build / PACKED_INDEX, index)
    (build / PACKED_PROGRESS).unlink(missing_ok=True)
    if bad_rows:
        text = "".join(f"{keys[r]}\t{bad[r]}\n" for r in bad_rows)
        atomic_write_bytes(build / BAD_IMAGES_FILE, ("# objID\treason\n" + text).encode())
    replace_dir(build, plan.store)
    return bad_rows


def _pack_chunk(
    args: tuple[
        str,
        tuple[int, int, int, int],
        list[tuple[int, str | None]],
        int | None,
        int | None,
        tuple[int, int],
    ],
) -> dict[int, str]:
    """Worker: decode rows into the partial file; return {row: reason} of bad images.

    Rows are written with ``os.pwrite`` (not a memory map), so a full disk is an ``OSError``
    (ENOSPC) rather than a SIGBUS.
    """
    path, shape, items, crop, resize, source = args
    row_bytes = shape[1] * shape[2] * shape[3]
    bad: dict[int, str] = {}
    fd = os.open(path, os.O_WRONLY)
    try:
        for row, img_path in items:
            if img_path is None:
                bad[row] = "no image file"
                continue
            try:
                arr = decode_image(Path(img_path), crop, resize, expect=source)
            except BadImage as e:
                bad[row] = str(e)
                continue
            data = np.ascontiguousarray(arr).tobytes()
            written = 0
            while written < len(data):
                written += os.pwrite(fd, data[written:], row * row_bytes + written)
        os.fsync(fd)
    finally:
        os.close(fd)
    return bad


def _load_progress(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def die_with_parent(parent: int) -> None:
    """Worker initializer: ask Linux to kill this worker when its parent dies (SIGKILL too).

    ``parent`` is the process that started the pool. Under the ``forkserver`` start method the
    worker's direct parent is the fork server, which exits when ``parent`` does, so the signal
    still arrives; the liveness check covers a ``parent`` that died before prctl took effect.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):  # no prctl: best effort only
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    try:
        os.kill(parent, 0)
    except ProcessLookupError:  # the parent died before prctl took effect
        os._exit(1)
    except PermissionError:  # alive, owned by someone else (cannot happen for our parent)
        pass


def _run_tasks(tasks: list[Any], workers: int) -> Iterator[dict[int, str]]:
    """Results of ``_pack_chunk`` over ``tasks``, in order (processes when workers > 1).

    Worker processes die with this process, even when it is killed with SIGKILL (Linux).
    """
    if workers <= 1:
        for t in tasks:
            yield _pack_chunk(t)
        return
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        futures = [pool.submit(_pack_chunk, t) for t in tasks]
        for f in futures:
            yield f.result()
    finally:
        # On interruption, drop queued chunks; running ones finish (they only fill the partial).
        pool.shutdown(wait=True, cancel_futures=True)
