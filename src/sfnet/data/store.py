"""Image stores of a dataset folder: the folder of ``images/{objID}.jpg|png|fits`` and the
packed uint8 store written by ``sfnet prepare``.

Layout of a prepared folder::

    DATA/galaxies.csv              catalog (or .parquet / .fits)
    DATA/images/{objID}.jpg        cutouts (JPEG, PNG, or FITS with g, r, i planes)
    DATA/packed/images.u8          raw (N, 3, H, W) uint8, C order, memory-mapped
    DATA/packed/index.json         objIDs (row order), geometry, fingerprint, bad rows
    DATA/bad_images.txt            objIDs dropped by ``prepare --skip-bad`` (with reasons)

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

import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sfnet.errors import DataError

#: Image file extensions recognised in ``images/`` (lower case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".fits", ".fit", ".fits.gz", ".fit.gz")
#: Sub-folders / files of a dataset folder.
IMAGES_DIR = "images"
PACKED_DIR = "packed"
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


def _read_fits_planes(path: Path) -> np.ndarray:
    from astropy.io import fits

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


def decode_image(path: Path, crop: int | None, resize: int | None = None) -> np.ndarray:
    """Decode one cutout to (3, H, W) uint8, resized and centre-cropped.

    Args:
        path: JPEG / PNG (RGB; grey or RGBA converted) or FITS (g, r, i planes).
        crop: side of the centre crop (pixels) or None for the whole image.
        resize: resize to ``resize`` x ``resize`` (bicubic) first when the size differs.

    Raises:
        BadImage: unreadable file, or image smaller than ``crop``.
    """
    from PIL import Image

    path = Path(path)
    try:
        parsed = _strip_ext(path.name)
        if parsed is not None and parsed[1].startswith(".fit"):
            img = Image.fromarray(fits_to_rgb(_read_fits_planes(path)), mode="RGB")
        else:
            with Image.open(path) as im:
                img = im.convert("RGB")
    except BadImage:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure means a bad image
        raise BadImage(f"cannot decode {path.name}: {type(e).__name__}: {e}") from None
    if resize is not None and img.size != (resize, resize):
        img = img.resize((resize, resize), Image.Resampling.BICUBIC)
    arr = np.asarray(img)  # (H, W, 3)
    h, w = arr.shape[:2]
    if crop is not None:
        if crop > h or crop > w:
            raise BadImage(f"{path.name} is {w}x{h} px, smaller than the crop {crop}")
        y0, x0 = (h - crop) // 2, (w - crop) // 2
        arr = arr[y0 : y0 + crop, x0 : x0 + crop]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


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

    ``images[idx]`` -> (n, 3, crop, crop) uint8; raises DataError naming a file that fails.
    """

    def __init__(self, paths: Sequence[Path], crop: int, resize: int | None) -> None:
        self._paths = list(paths)
        self._crop, self._resize = crop, resize
        self.shape = (len(self._paths), 3, crop, crop)

    def __len__(self) -> int:
        return self.shape[0]

    def _one(self, i: int) -> np.ndarray:
        try:
            return decode_image(self._paths[i], self._crop, self._resize)
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


def _read_index(folder: Path) -> dict[str, Any] | None:
    p = Path(folder) / PACKED_DIR / PACKED_INDEX
    if not p.is_file():
        return None
    try:
        idx = json.loads(p.read_text())
        if idx.get("version") != STORE_VERSION:
            raise ValueError(f"store version {idx.get('version')} (expected {STORE_VERSION})")
        for key in ("n", "height", "width", "fingerprint", "objids", "bad_rows"):
            if key not in idx:
                raise ValueError(f"no {key!r}")
    except (ValueError, OSError) as e:
        raise DataError(
            f"{p}: unreadable packed-store index ({e}); re-run `sfnet prepare`"
        ) from None
    return idx


def skipped_objids(folder: Path) -> list[str]:
    """objIDs (as text) that ``prepare --skip-bad`` dropped from the packed store; [] if none."""
    idx = _read_index(folder)
    if idx is None:
        return []
    return [idx["objids"][r] for r in idx["bad_rows"]]


def open_images(
    folder: Path,
    objids: Sequence,
    crop: int = 144,
    resize: int | None = None,
    folder_fingerprint: str | None = None,
) -> Any:
    """Images of ``objids`` (in that order) from a dataset folder, centre-cropped to ``crop``.

    Uses the packed store (``packed/``) when present; it must be fresh (fingerprint of catalog
    + images unchanged) and of compatible geometry (same ``resize``; stored crop equal to
    ``crop`` or the whole image). Otherwise decodes from ``images/`` on access.

    ``folder_fingerprint``: the folder's :func:`fingerprint` when the caller already has it
    (it stats every image file, so it is computed once per load).

    Returns:
        :class:`PackedImages` or :class:`FolderImages`: ``len()``, ``.shape`` (N, 3, crop, crop),
        ``[idx] -> (n, 3, crop, crop) uint8``.

    Raises:
        DataError: stale, incomplete or mismatched packed store; missing images; crop larger
            than the images.
    """
    folder = Path(folder)
    keys = [str(o) for o in objids]
    packed = folder / PACKED_DIR
    idx = _read_index(folder)
    if idx is not None:
        fp = folder_fingerprint or fingerprint(folder)
        return _open_packed(folder, idx, keys, crop, resize, fp)
    if (packed / PACKED_PROGRESS).exists() or (packed / PACKED_PARTIAL).exists():
        raise DataError(
            f"{packed}: the packed store is incomplete (an interrupted `sfnet prepare`); "
            f"re-run `sfnet prepare {folder}` to finish it, or delete {packed}"
        )
    index = image_index(folder)
    missing = [k for k in keys if k not in index]
    if missing:
        raise DataError(f"{folder / IMAGES_DIR}: no image for {_format_ids(missing)}")
    paths = [index[k] for k in keys]
    if paths:
        try:
            decode_image(paths[0], crop, resize)
        except BadImage as e:
            raise DataError(f"{paths[0]}: {e}") from None
    return FolderImages(paths, crop, resize)


def _open_packed(
    folder: Path, idx: dict[str, Any], keys: list[str], crop: int, resize: int | None, fp: str
) -> PackedImages:
    packed = folder / PACKED_DIR
    if idx["fingerprint"] != fp:
        flags = "".join(f" --{k} {idx[k]}" for k in ("resize", "crop") if idx.get(k))
        raise DataError(
            f"{packed}: the packed store is stale (catalog or images changed since "
            f"`sfnet prepare`); re-run `sfnet prepare {folder}{flags}` (or delete {packed} to "
            "read the image folder directly)"
        )
    h, w, stored_crop = int(idx["height"]), int(idx["width"]), idx.get("crop")
    redo = f"re-run `sfnet prepare {folder}" + (f" --resize {resize}" if resize else "")
    if idx.get("resize") != resize:
        raise DataError(
            f"{packed}: the packed store was made with resize={idx.get('resize')} but "
            f"resize={resize} is requested; {redo}` (it keeps whole images unless --crop is given)"
        )
    if crop > h or crop > w:
        raise DataError(
            f"{packed}: crop {crop} is larger than the stored {w}x{h} px images; ask for a "
            f"crop <= {min(h, w)} or re-run `sfnet prepare {folder} --resize N` with N >= {crop}"
        )
    if stored_crop is not None and stored_crop != crop:
        raise DataError(
            f"{packed}: the packed store holds {stored_crop} px crops but crop {crop} is "
            f"requested; {redo}` without --crop to keep whole images (any crop then works)"
        )
    data = packed / PACKED_DATA
    n = int(idx["n"])
    if not data.is_file() or data.stat().st_size != n * 3 * h * w:
        raise DataError(f"{data}: missing or wrong size for {n} x 3 x {h} x {w}; {redo}`")
    bad = set(idx["bad_rows"])
    row_of = {k: r for r, k in enumerate(idx["objids"]) if r not in bad}
    missing = [k for k in keys if k not in row_of]
    if missing:
        stored = set(idx["objids"])
        dropped = [k for k in missing if k in stored]
        why = f" ({len(dropped)} dropped by --skip-bad, see {BAD_IMAGES_FILE})" if dropped else ""
        raise DataError(f"{packed}: not in the packed store: {_format_ids(missing)}{why}")
    rows = np.array([row_of[k] for k in keys], dtype=np.int64)
    # A stored crop equal to ``crop`` is used as is; a whole image is cropped with the same
    # offset (size - crop) // 2 as a direct crop would use.
    return PackedImages(data, n, h, w, rows, crop)


# ---------------------------------------------------------------------------------- prepare


@dataclass
class PrepareResult:
    """What ``prepare`` did.

    Attributes:
        store: the ``packed/`` folder.
        n_images: images in the store (bad ones excluded).
        n_bad: images dropped (``skip_bad``), listed in ``bad_file``.
        bad_file: ``bad_images.txt`` or None.
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


def _pack_chunk(
    args: tuple[
        str, tuple[int, int, int, int], list[tuple[int, str | None]], int | None, int | None
    ],
) -> dict[int, str]:
    """Worker: decode rows into the partial memmap; return {row: reason} of bad images."""
    path, shape, items, crop, resize = args
    mm = np.memmap(path, dtype=np.uint8, mode="r+", shape=shape)
    h, w = shape[2], shape[3]
    bad: dict[int, str] = {}
    for row, img_path in items:
        if img_path is None:
            bad[row] = "no image file"
            continue
        try:
            arr = decode_image(Path(img_path), crop, resize)
        except BadImage as e:
            bad[row] = str(e)
            continue
        if arr.shape[1:] != (h, w):
            bad[row] = (
                f"{Path(img_path).name} is {arr.shape[2]}x{arr.shape[1]} px, not {w}x{h} "
                "like the first image (pass --resize or --crop)"
            )
            continue
        mm[row] = arr
    mm.flush()
    del mm
    return bad


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
    """Decode every catalog image once into the packed store ``folder/packed``.

    The store is (N, 3, H, W) uint8 in catalog row order (H = W = ``crop``, else ``resize``,
    else the images' own size, which must then be the same for all). Work is split in chunks
    decoded by ``workers`` processes (default: all cores); progress is saved after each chunk
    so an interrupted run resumes; the store appears under its final names only when complete.

    Args:
        folder: dataset folder (catalog + ``images/``).
        crop: centre crop stored (pixels); None keeps whole images (any crop works later).
        resize: resize side (pixels) before cropping; None keeps the stored size.
        workers: decoding processes; 1 decodes in this process.
        skip_bad: drop missing/corrupt images (counted, listed in ``bad_images.txt``) instead
            of failing.
        progress: show a tqdm progress bar.
        chunk_size: images per work unit (and per progress checkpoint).
        on_chunk: called as ``on_chunk(done_chunks, total_chunks)`` after each chunk.

    Raises:
        DataError: missing or bad images without ``skip_bad`` (first 20 objIDs and the count),
            no decodable image, crop larger than the images.
    """
    from sfnet.data.catalog import find_catalog, read_catalog
    from sfnet.io import atomic_write_bytes, atomic_write_json

    t0 = time.perf_counter()
    folder = Path(folder)
    if crop is not None and crop <= 0 or resize is not None and resize <= 0:
        raise DataError(f"crop and resize must be positive (got crop={crop}, resize={resize})")
    if crop is not None and resize is not None and crop > resize:
        raise DataError(f"crop ({crop}) must not exceed resize ({resize})")
    cat_path = find_catalog(folder)
    keys = [str(o) for o in read_catalog(cat_path)["objID"].to_numpy()]
    index = image_index(folder)
    fp = fingerprint(folder)
    packed = folder / PACKED_DIR
    bad_file = folder / BAD_IMAGES_FILE

    missing = [k for k in keys if k not in index]
    if missing and not skip_bad:
        raise DataError(
            f"{folder / IMAGES_DIR}: no image for {_format_ids(missing)}; "
            "add them or pass --skip-bad to drop them"
        )

    try:
        old = _read_index(folder)
    except DataError:  # an unreadable index is simply replaced
        old = None
    if (
        old is not None
        and old["fingerprint"] == fp
        and old.get("crop") == crop
        and old.get("resize") == resize
        and (skip_bad or not old["bad_rows"])
        and (packed / PACKED_DATA).is_file()
    ):
        return PrepareResult(
            store=packed,
            n_images=int(old["n"]) - len(old["bad_rows"]),
            n_bad=len(old["bad_rows"]),
            bad_file=bad_file if old["bad_rows"] else None,
            height=int(old["height"]),
            width=int(old["width"]),
            crop=crop,
            resize=resize,
            fingerprint=fp,
            up_to_date=True,
            seconds=time.perf_counter() - t0,
        )

    h, w = _geometry(keys, index, crop, resize, folder)
    n = len(keys)
    shape = (n, 3, h, w)
    chunks = [list(range(s, min(s + chunk_size, n))) for s in range(0, n, chunk_size)]
    geometry = {
        "n": n,
        "height": h,
        "width": w,
        "crop": crop,
        "resize": resize,
        "chunk_size": chunk_size,
        "fingerprint": fp,
    }
    packed.mkdir(parents=True, exist_ok=True)
    partial, prog_path = packed / PACKED_PARTIAL, packed / PACKED_PROGRESS
    done: set[int] = set()
    bad: dict[int, str] = {}
    prog = _load_progress(prog_path)
    if (
        prog is not None
        and prog.get("geometry") == geometry
        and partial.is_file()
        and partial.stat().st_size == n * 3 * h * w
    ):
        done = set(prog["done"])
        bad = {int(r): s for r, s in prog["bad"].items()}
    else:
        prog_path.unlink(missing_ok=True)
        with open(partial, "wb") as f:
            f.truncate(n * 3 * h * w)
    resumed = len(done)
    # An older complete store no longer matches: invalidate it before writing anything new.
    (packed / PACKED_INDEX).unlink(missing_ok=True)

    todo = [c for c in range(len(chunks)) if c not in done]
    tasks = [
        (
            str(partial),
            shape,
            [(r, str(index[keys[r]]) if keys[r] in index else None) for r in chunks[c]],
            crop,
            resize,
        )
        for c in todo
    ]
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, initial=sum(len(chunks[c]) for c in done), unit="img", desc="prepare")
    try:
        for c, chunk_bad in zip(todo, _run_tasks(tasks, n_workers), strict=True):
            done.add(c)
            bad.update(chunk_bad)
            atomic_write_json(
                prog_path,
                {
                    "geometry": geometry,
                    "done": sorted(done),
                    "bad": {str(r): s for r, s in bad.items()},
                },
            )
            if bar is not None:
                bar.update(len(chunks[c]))
            if on_chunk is not None:
                on_chunk(len(done), len(chunks))
    finally:
        if bar is not None:
            bar.close()

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
    if bad_rows:
        text = "".join(f"{keys[r]}\t{bad[r]}\n" for r in bad_rows)
        atomic_write_bytes(bad_file, ("# objID\treason\n" + text).encode())
    else:
        bad_file.unlink(missing_ok=True)
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, packed / PACKED_DATA)
    atomic_write_json(
        packed / PACKED_INDEX,
        {
            "version": STORE_VERSION,
            "n": n,
            "height": h,
            "width": w,
            "crop": crop,
            "resize": resize,
            "fingerprint": fp,
            "skip_bad": skip_bad,
            "catalog": cat_path.name,
            "bad_rows": bad_rows,
            "objids": keys,
        },
    )
    prog_path.unlink(missing_ok=True)
    return PrepareResult(
        store=packed,
        n_images=n - len(bad_rows),
        n_bad=len(bad_rows),
        bad_file=bad_file if bad_rows else None,
        height=h,
        width=w,
        crop=crop,
        resize=resize,
        fingerprint=fp,
        resumed_chunks=resumed,
        seconds=time.perf_counter() - t0,
    )


def _geometry(
    keys: list[str], index: dict[str, Path], crop: int | None, resize: int | None, folder: Path
) -> tuple[int, int]:
    if crop is not None:
        return crop, crop
    if resize is not None:
        return resize, resize
    for k in keys:
        if k in index:
            try:
                arr = decode_image(index[k], None, None)
            except BadImage:
                continue
            return arr.shape[1], arr.shape[2]
    raise DataError(f"{folder / IMAGES_DIR}: no decodable image for any catalog objID")


def _load_progress(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _run_tasks(tasks: list[Any], workers: int) -> Iterator[dict[int, str]]:
    """Results of ``_pack_chunk`` over ``tasks``, in order (processes when workers > 1)."""
    if workers <= 1:
        for t in tasks:
            yield _pack_chunk(t)
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(_pack_chunk, t) for t in tasks]
        for f in futures:
            yield f.result()
    finally:
        # On interruption, drop queued chunks; running ones finish (they only fill the partial).
        pool.shutdown(wait=True, cancel_futures=True)
