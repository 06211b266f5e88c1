"""Galaxies from whatever a user has: the one loader for training input, prediction and explanation.

Two entry points, one set of rules:

- :func:`open_dataset`: galaxies to *train* on or analyse (:class:`~sfnet.data.dataset.GalaxyData`;
  a catalog's quality cuts select the rows).
- :func:`open_galaxies`: galaxies to *predict or explain* (:class:`Galaxies`): every galaxy that
  has an image, measured or not, each with its measured targets (NaN where none) and its
  status (passes the cuts, "no measurement" or "fails cut X"). ``sfnet predict``,
  ``sfnet explain``, :meth:`sfnet.Run.predict` and :meth:`sfnet.Run.explain` all use it.

Accepted sources, treated alike: a dataset folder (catalog + ``images/``, packed store used when
present), a packed ``.npz`` array file, a bare folder of cutouts named ``{objID}.jpg|png|fits``,
an in-memory (N, 3, H, W) or (3, H, W) uint8 array (RGB of g, r, i), a PIL image or a list of
them, or :class:`~sfnet.data.dataset.GalaxyData`.

Image geometry (the run's ``resize`` and ``crop``): every image, whatever its source, is first
resized to ``resize`` x ``resize`` px (bicubic, exactly as :func:`sfnet.data.store.decode_image`
does for files) when ``resize`` is set and the image has another size, then centre-cropped to
``crop``; an image smaller than ``crop`` is refused. So an image is never centre-cropped at
another scale than the one the run was trained at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfnet.config import DataConfig
from sfnet.data.dataset import GalaxyData
from sfnet.errors import DataError

#: Default centre crop when none is given: the paper's 144 px, or the whole image if smaller.
DEFAULT_CROP = 144
#: The status of a galaxy that passes the target's quality cuts.
PASSES = ""
NO_MEASUREMENT = "no measurement"


# ------------------------------------------------------------------------ in-memory images


def resize_image(image: np.ndarray, resize: int | None) -> np.ndarray:
    """(3, H, W) uint8 -> (3, resize, resize) uint8, bicubic as for image files (unchanged when
    ``resize`` is None or the image already has that size)."""
    if resize is None or image.shape[-2:] == (resize, resize):
        return image
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)), mode="RGB")
    img = img.resize((resize, resize), Image.Resampling.BICUBIC)
    return np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))


class ArrayImages:
    """In-memory (N, 3, H, W) uint8 images, resized (``resize``) and centre-cropped (``crop``) on
    access: ``images[idx] -> (n, 3, crop, crop) uint8``.

    Raises:
        DataError: not (N, 3, H, W) uint8, or smaller than ``crop`` after the resize.
    """

    def __init__(
        self, arr: np.ndarray, crop: int, resize: int | None = None, what: str = "images"
    ) -> None:
        arr = np.asarray(arr)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 3:
            raise DataError(f"{what} must be (N, 3, H, W) uint8, got {arr.shape} {arr.dtype}")
        h, w = (resize, resize) if resize is not None else arr.shape[-2:]
        if crop > h or crop > w:
            size = f"{arr.shape[-1]}x{arr.shape[-2]} px" + (
                f" (resized to {resize})" if resize else ""
            )
            raise DataError(f"{what} are {size}, smaller than the crop {crop}")
        self._arr, self._crop, self._resize = arr, int(crop), resize
        self._y0, self._x0 = (h - crop) // 2, (w - crop) // 2
        self.shape = (len(arr), 3, int(crop), int(crop))

    def __len__(self) -> int:
        return self.shape[0]

    def _one(self, i: int) -> np.ndarray:
        img = resize_image(self._arr[i], self._resize)
        c, y0, x0 = self._crop, self._y0, self._x0
        return img[:, y0 : y0 + c, x0 : x0 + c]

    def __getitem__(self, idx: Any) -> np.ndarray:
        if np.isscalar(idx):
            return np.ascontiguousarray(self._one(int(idx)))
        sel = np.arange(len(self))[idx] if isinstance(idx, slice) else np.atleast_1d(idx)
        if self._resize is None:
            c, y0, x0 = self._crop, self._y0, self._x0
            return np.ascontiguousarray(self._arr[sel, :, y0 : y0 + c, x0 : x0 + c])
        out = np.empty((len(sel), *self.shape[1:]), dtype=np.uint8)
        for j, i in enumerate(sel):
            out[j] = self._one(int(i))
        return out


def _is_pil(x: Any) -> bool:
    return type(x).__module__.startswith("PIL.")


def _pil_array(image: Any) -> np.ndarray:
    """A PIL image as (3, H, W) uint8 RGB (grey or RGBA converted, as for image files)."""
    return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def _stack_pil(images: list[Any], resize: int | None) -> np.ndarray:
    arrs = [resize_image(_pil_array(im), resize) for im in images]
    if len({a.shape for a in arrs}) > 1:
        raise DataError(
            "the PIL images differ in size; give resize (the run's --resize) or images of one size"
        )
    return np.stack(arrs)


# ---------------------------------------------------------------------------- training input


def open_dataset(
    source: str | Path | np.ndarray,
    catalog: pd.DataFrame | None = None,
    *,
    target: str = "metallicity",
    crop: int | None = None,
    resize: int | None = None,
) -> GalaxyData:
    """Open galaxies for training or analysis (the target's quality cuts select the rows).

    Args:
        source: a dataset folder (catalog + ``images/``, packed store used when present), a
            packed ``.npz`` array file, or an in-memory (N, 3, H, W) uint8 array of gri images
            (RGB order, 0.262"/px).
        catalog: for an array only: N catalog rows aligned with the images (MPA-JHU column
            names; fluxes in 1e-17 erg/s/cm^2). With the target columns present the paper's
            quality cuts select rows; without a catalog the objIDs are 0..N-1 and targets NaN.
        target: ``metallicity`` (oh_p50, dex) or ``bpt_lines`` (log10 line fluxes).
        crop: centre crop in pixels (default: 144, or the whole image if smaller).
        resize: resize images to this side (px, bicubic) before cropping.

    Returns:
        :class:`~sfnet.data.dataset.GalaxyData`: ``objid`` (N,), ``y`` (N, T) in physical
        units (NaN where the catalog has no targets), ``images[idx]`` -> (n, 3, crop, crop)
        uint8, ``catalog`` rows after the cuts.

    Example:
        >>> data = sfnet.open_dataset("examples/sdss-metallicity-400", crop=128)
        >>> len(data), data.images.shape
        (400, (400, 3, 128, 128))
    """
    if isinstance(source, (str, Path)):
        from sfnet.data.dataset import load_dataset

        path = Path(source)
        size = crop or min(DEFAULT_CROP, native_size(path, resize))
        cfg = DataConfig(path=str(path), target=target, crop=size, resize=resize)
        cfg.validate()
        data = load_dataset(cfg, require_targets=False)
        data.config = cfg  # where it came from: lets train_run() and Run reopen it
        return data
    return _array_dataset(np.asarray(source), catalog, target, crop, resize)


def native_size(path: Path, resize: int | None = None) -> int:
    """Side in pixels of the images (after ``resize``) of a dataset folder or ``.npz`` file."""
    if resize:
        return resize
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "images" in z.files:
                return int(min(z["images"].shape[-2:]))
        return DEFAULT_CROP
    from sfnet.data import store

    side = store.stored_side(path, None) if path.is_dir() else None
    if side is not None:
        return side
    if not (path / store.IMAGES_DIR).is_dir():
        return DEFAULT_CROP  # load_dataset names the problem
    size, _ = store.majority_size(sorted(store.image_index(path).values()), sample=8)
    return DEFAULT_CROP if size is None else int(min(size))


def _array_dataset(
    arr: np.ndarray,
    catalog: pd.DataFrame | None,
    target: str,
    crop: int | None,
    resize: int | None = None,
) -> GalaxyData:
    from sfnet.data import catalog as cat
    from sfnet.data.dataset import array_fingerprint

    arr = ArrayImages(arr, 1)._arr  # checked (N, 3, H, W) uint8
    names = cat.target_names(target)
    if catalog is None:
        catalog = pd.DataFrame({"objID": np.arange(len(arr), dtype=np.int64)})
    if len(catalog) != len(arr):
        raise DataError(f"catalog has {len(catalog)} rows for {len(arr)} images")
    catalog = catalog.reset_index(drop=True)
    if "objID" not in catalog.columns:
        catalog.insert(0, "objID", np.arange(len(arr), dtype=np.int64))
    cuts: list[Any] = []
    if all(c in catalog.columns for c in cat.target_columns(target)):
        sel = cat.select_target(catalog.assign(_row=np.arange(len(arr))), target, "catalog")
        rows = sel.catalog.pop("_row").to_numpy()
        catalog, y, cuts, arr = sel.catalog, sel.y, list(sel.cuts), arr[rows]
    else:
        y = np.full((len(arr), len(names)), np.nan, dtype=np.float32)
    size = resize if resize is not None else min(arr.shape[-2:])
    images = ArrayImages(arr, crop or min(DEFAULT_CROP, size), resize)
    arr = images[np.arange(len(images))]
    objid = catalog["objID"].to_numpy()
    return GalaxyData(objid, y, names, arr, catalog, array_fingerprint(arr, y, objid), cuts)


# ------------------------------------------------------------------ galaxies to predict or explain


@dataclass
class Galaxies:
    """Galaxies to predict or explain: every galaxy of a source that has an image.

    Attributes:
        objid: (N,) int64 or str IDs (str as a fixed-width unicode array: zero-padded IDs stay
            text).
        images: ImageArray, ``images[idx] -> (n, 3, crop, crop) uint8``.
        measured: (N, T) float64 measured targets in physical units (NaN where not measured).
        status: (N,) str: ``""`` (passes the target's quality cuts), ``"no measurement"`` or
            ``"fails cut <cut>"``.
        target_names: the T targets of ``measured``.
        source: where they came from (a path, ``"array"``, ``"PIL image"``).
        fingerprint: the dataset's fingerprint (None for a bare image folder).
        n_catalog: catalog rows (images for a source without catalog).
        no_image: IDs of catalog rows without an image. dropped: IDs that ``prepare --skip-bad``
            dropped (unreadable images).
        catalog: the catalog rows of the galaxies (None without catalog).
        kind: ``folder`` (dataset folder), ``images`` (bare image folder), ``arrays`` (``.npz``,
            array, PIL image, GalaxyData).
    """

    objid: np.ndarray
    images: Any
    measured: np.ndarray
    status: np.ndarray
    target_names: list[str]
    source: str
    fingerprint: str | None = None
    n_catalog: int = 0
    no_image: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    catalog: pd.DataFrame | None = None
    kind: str = "arrays"

    def __len__(self) -> int:
        return len(self.objid)

    @property
    def passes_cuts(self) -> np.ndarray:
        """(N,) bool: the galaxy has a measurement that passes the target's quality cuts."""
        return self.status == PASSES

    def rows_of(self, objids: Any) -> np.ndarray:
        """Rows of ``objids`` (compared as text); a :class:`DataError` saying where each absent
        one was looked for and why it is not among the galaxies."""
        where = {str(o): i for i, o in enumerate(self.objid)}
        wanted = [str(o) for o in np.atleast_1d(np.asarray(objids, dtype=object))]
        missing = [o for o in wanted if o not in where]
        if missing:
            raise DataError("; ".join(self._why_absent(o) for o in missing))
        return np.asarray([where[o] for o in wanted], dtype=np.int64)

    def _why_absent(self, objid: str) -> str:
        if objid in set(self.dropped):
            return (
                f"objID {objid}: its image in {self.source} is unreadable (dropped by "
                "`sfnet prepare --skip-bad`, listed in packed/bad_images.txt)"
            )
        if objid in set(self.no_image):
            return (
                f"objID {objid}: has a catalog row in {self.source} but no image file "
                f"{objid}.jpg|png|fits in its images/ folder"
            )
        if self.kind == "folder":
            return (
                f"objID {objid}: not in {self.source}: none of its {self.n_catalog} catalog rows "
                f"has this objID (and {len(self)} have an image)"
            )
        if self.kind == "images":
            return (
                f"objID {objid}: not in {self.source}: no image named {objid}.jpg|png|fits "
                f"among its {len(self)} images"
            )
        return f"objID {objid}: not in {self.source}: none of its {len(self)} galaxies has it"


def open_galaxies(
    source: Any,
    *,
    target: str = "metallicity",
    crop: int | None = None,
    resize: int | None = None,
) -> Galaxies:
    """Every galaxy of ``source`` that has an image, at the geometry ``resize`` / ``crop``.

    Args:
        source: see the module docstring (folder, ``.npz``, image folder, array, PIL image(s),
            GalaxyData).
        target: the target group whose measurement and quality cuts are reported.
        crop: centre crop (px; default: 144 or the whole image if smaller).
        resize: resize every image of another size to this side first (px).

    Returns:
        :class:`Galaxies` (no quality cut applied: the status says which pass).

    Raises:
        DataError: naming the file or input that cannot be used.
    """
    from sfnet.data import catalog as cat

    names = cat.target_names(target)
    if isinstance(source, GalaxyData):
        side = source.images.shape[-1]
        if crop is not None and side != crop:  # opened at another geometry: never re-cropped
            raise DataError(
                f"these galaxies were opened at {side} px, the run needs {crop} px: open them "
                f"with open_dataset(..., crop={crop}, resize={resize}) or pass the folder"
            )
        return _from_galaxy_data(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_file() and path.suffix == ".npz":
            return _from_npz(path, names, crop, resize)
        if not path.exists():
            raise DataError(f"{path}: no such dataset folder, image folder or file")
        if path.is_dir() and _has_catalog(path):
            return _from_folder(path, target, crop, resize)
        if path.is_dir():
            return _from_image_folder(path, names, crop, resize)
        raise DataError(f"{path}: expected a dataset folder, an image folder or a .npz file")
    if _is_pil(source) or (isinstance(source, (list, tuple)) and source and _is_pil(source[0])):
        arr, what = (
            _stack_pil(list(source) if isinstance(source, (list, tuple)) else [source], resize),
            "PIL image",
        )
    else:
        arr, what = np.asarray(source), "images"
    images = ArrayImages(
        arr, crop or min(DEFAULT_CROP, resize or min(np.shape(arr)[-2:])), resize, what
    )
    n = len(images)
    return Galaxies(
        objid=np.arange(n, dtype=np.int64),
        images=images,
        measured=np.full((n, len(names)), np.nan),
        status=np.full(n, NO_MEASUREMENT, dtype=object),
        target_names=names,
        source="array" if what == "images" else what,
        n_catalog=n,
    )


def _status(measured: np.ndarray, failed: np.ndarray | None) -> np.ndarray:
    """Per-galaxy status from the measured targets and the first failed cut (or None)."""
    status = np.full(len(measured), PASSES, dtype=object)
    if failed is not None:
        status[failed != ""] = ["fails cut " + f for f in failed[failed != ""]]
    status[~np.isfinite(measured).any(axis=1)] = NO_MEASUREMENT
    return status


def _from_galaxy_data(d: GalaxyData) -> Galaxies:
    measured = np.asarray(d.y, dtype=np.float64)
    return Galaxies(
        objid=_ids(d.objid),
        images=d.images,
        measured=measured,
        status=_status(measured, None),
        target_names=list(d.target_names),
        source=str(getattr(getattr(d, "config", None), "path", "") or "GalaxyData"),
        fingerprint=d.fingerprint,
        n_catalog=len(d),
        catalog=d.catalog,
    )


def _ids(objid: Any) -> np.ndarray:
    """IDs as int64 or fixed-width unicode (never an object array: it would need pickle)."""
    a = np.asarray(objid)
    if a.dtype.kind in "iu":
        return a.astype(np.int64)
    return a.astype(str)


def _from_npz(path: Path, names: list[str], crop: int | None, resize: int | None) -> Galaxies:
    from sfnet.data.catalog import check_unique_ids
    from sfnet.data.dataset import array_fingerprint

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        raise DataError(f"{path}: cannot read as .npz ({e})") from None
    if "images" not in arrays:
        raise DataError(f"{path}: missing array 'images' (has {', '.join(arrays)})")
    images = arrays["images"]
    n = len(images)
    objid = arrays.get("objID", np.arange(n, dtype=np.int64))
    if objid.dtype.kind == "f":
        raise DataError(f"{path}: 'objID' is float; store it as int64 or string")
    y = np.asarray(arrays.get("y", np.full((n, len(names)), np.nan)), dtype=np.float32)
    y = y[:, None] if y.ndim == 1 else y
    if not (len(y) == len(objid) == n):
        raise DataError(
            f"{path}: images ({n}), y ({len(y)}) and objID ({len(objid)}) differ in length"
        )
    check_unique_ids(objid, path)
    if "target_names" in arrays:
        names = [str(s) for s in arrays["target_names"]]
    measured = y.astype(np.float64)
    size = resize or min(images.shape[-2:]) if images.ndim == 4 else 0
    return Galaxies(
        objid=_ids(objid),
        images=ArrayImages(images, crop or min(DEFAULT_CROP, size), resize, str(path)),
        measured=measured,
        status=_status(measured, None),
        target_names=names,
        source=str(path),
        fingerprint=array_fingerprint(images, y, objid) if "y" in arrays else None,
        n_catalog=n,
    )


def _has_catalog(folder: Path) -> bool:
    from sfnet.data.catalog import find_catalog

    try:
        find_catalog(folder)
    except DataError:
        return False
    return True


def _from_folder(path: Path, target: str, crop: int | None, resize: int | None) -> Galaxies:
    """A dataset folder: every catalog row with a usable image, no quality cut."""
    from sfnet.data import catalog as cat
    from sfnet.data import store

    cat_path = cat.find_catalog(path)
    table = cat.read_catalog(cat_path)
    names = cat.target_names(target)
    measured = np.full((len(table), len(names)), np.nan)
    failed = None
    if all(c in table.columns for c in cat.target_columns(target)):
        measured, failed = cat.failed_cuts(table, target, str(cat_path))
    keys = table["objID"].astype(str).to_numpy()
    size = crop or min(DEFAULT_CROP, native_size(path, resize))
    dropped = set(store.skipped_objids(path, size, resize))
    have = set(store.image_index(path))
    usable = np.array([k in have and k not in dropped for k in keys], dtype=bool)
    objid = table["objID"].to_numpy()[usable]
    fp = store.fingerprint(path)
    images = store.open_images(path, objid, size, resize, folder_fingerprint=fp)
    measured = measured[usable]
    return Galaxies(
        objid=_ids(objid),
        images=images,
        measured=measured,
        status=_status(measured, None if failed is None else failed[usable]),
        target_names=names,
        source=str(path),
        fingerprint=fp,
        n_catalog=len(table),
        no_image=[k for k in keys[~usable] if k not in dropped],
        dropped=[k for k in keys[~usable] if k in dropped],
        catalog=table.loc[usable].reset_index(drop=True),
        kind="folder",
    )


def _from_image_folder(
    folder: Path, names: list[str], crop: int | None, resize: int | None
) -> Galaxies:
    """A bare folder of cutouts ``{objID}.jpg|png|fits`` (or a folder holding ``images/``)."""
    from sfnet.data import store

    base = folder / store.IMAGES_DIR if (folder / store.IMAGES_DIR).is_dir() else folder
    index: dict[str, Path] = {}
    for p in sorted(base.iterdir()):
        low = p.name.lower()
        ext = next(
            (e for e in sorted(store.IMAGE_EXTENSIONS, key=len, reverse=True) if low.endswith(e)),
            None,
        )
        if ext is None or not p.is_file() or p.name.startswith("."):
            continue
        stem = p.name[: -len(ext)]
        if stem in index:
            raise DataError(f"{base}: two images for objID {stem}: {index[stem].name} and {p.name}")
        index[stem] = p
    if not index:
        raise DataError(f"{folder}: no images (*.jpg, *.png, *.fits) and no catalog found")
    keys = sorted(index)
    paths = [index[k] for k in keys]
    expect = None
    if resize is None:
        size, odd = store.majority_size(paths)
        if odd:
            p, (h, w) = odd[0]
            raise DataError(
                f"{base}: images of different sizes ({p.name} is {w}x{h} px, most are "
                f"{size[1]}x{size[0]}); centre crops would differ in scale"
            )
        expect = size
    side = resize or (min(expect) if expect else DEFAULT_CROP)
    images = store.FolderImages(paths, crop or min(DEFAULT_CROP, side), resize, expect)
    images[[0]]  # the first image decodes (names the file and the problem if not)
    n = len(keys)
    return Galaxies(
        objid=np.asarray(keys, dtype=str),
        images=images,
        measured=np.full((n, len(names)), np.nan),
        status=np.full(n, NO_MEASUREMENT, dtype=object),
        target_names=names,
        source=str(folder),
        n_catalog=n,
        kind="images",
    )
