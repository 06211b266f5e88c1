"""One entry point from a ``DataConfig`` to aligned images + targets: :func:`load_dataset`.

Two forms of ``DataConfig.path`` are accepted:

- a dataset folder (catalog + ``images/``, optionally a packed store from ``sfnet prepare``);
- a packed array file ``*.npz`` with ``images`` (N, 3, H, W) uint8, ``y`` (N, T) float,
  ``objID`` (N,) and optionally ``target_names`` (T,) — handy for tests and for data that is
  already in memory elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from sfnet.config import DataConfig
from sfnet.data.catalog import check_unique_ids
from sfnet.errors import DataError


class ImageArray(Protocol):
    """Images aligned with the catalog rows: ``images[idx] -> (n, 3, H, W) uint8``."""

    shape: tuple[int, ...]

    def __len__(self) -> int: ...

    def __getitem__(self, idx: np.ndarray) -> np.ndarray: ...


@dataclass
class GalaxyData:
    """Galaxies ready for training or analysis, all fields aligned row by row.

    Attributes:
        objid: (N,) int64 or str object IDs.
        y: (N, T) float32 targets in physical units (dex for oh_p50; log10 of fluxes in
            1e-17 erg/s/cm^2 for the line targets).
        target_names: the T target names.
        images: an :class:`ImageArray` of (N, 3, H, W) uint8.
        catalog: the catalog rows kept after the quality cuts (all columns).
        fingerprint: short hash of catalog + images, saved with each model.
        cuts: the quality cuts applied, with the number of rows each removed.
    """

    objid: np.ndarray
    y: np.ndarray
    target_names: list[str]
    images: Any
    catalog: pd.DataFrame
    fingerprint: str
    cuts: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)


class _CroppedArray:
    """Centre-crops a stored (N, 3, H, W) uint8 array on access."""

    def __init__(self, arr: np.ndarray, crop: int) -> None:
        n, c, h, w = arr.shape
        self._arr = arr
        self._y0, self._x0 = (h - crop) // 2, (w - crop) // 2
        self._crop = crop
        self.shape = (n, c, crop, crop)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        y0, x0, c = self._y0, self._x0, self._crop
        return np.ascontiguousarray(self._arr[idx, :, y0 : y0 + c, x0 : x0 + c])


def load_dataset(cfg: DataConfig, require_targets: bool = True) -> GalaxyData:
    """Load the galaxies described by ``cfg`` (folder or ``.npz``), after the quality cuts.

    With ``require_targets=False`` (prediction on new galaxies), a catalog that lacks the
    target columns is accepted whole: no quality cut is applied and ``y`` is NaN.
    """
    path = Path(cfg.path)
    if not cfg.path:
        raise DataError("no data given: pass a dataset folder or a .npz array file")
    if not path.exists():
        raise DataError(f"{path}: no such dataset folder or file")
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(f"{path}: expected a dataset folder or a .npz array file")
        return _load_npz(path, cfg)
    return _load_folder(path, cfg, require_targets)


def _load_npz(path: Path, cfg: DataConfig) -> GalaxyData:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user error here
        raise DataError(f"{path}: cannot read as .npz ({e})") from None
    for key in ("images", "y", "objID"):
        if key not in z.files:
            raise DataError(f"{path}: missing array {key!r} (has {', '.join(z.files)})")
    images, y, objid = z["images"], z["y"], z["objID"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise DataError(
            f"{path}: 'images' must be (N, 3, H, W) uint8, got {images.shape} {images.dtype}"
        )
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if not (len(images) == len(y) == len(objid)):
        raise DataError(
            f"{path}: images ({len(images)}), y ({len(y)}) and objID ({len(objid)}) differ in length"
        )
    if objid.dtype.kind == "f":
        raise DataError(f"{path}: 'objID' is float; store it as int64 or string")
    check_unique_ids(objid, path)
    bad = ~np.isfinite(y).all(axis=1)
    if bad.any():
        raise DataError(
            f"{path}: 'y' has non-finite values in rows {np.flatnonzero(bad)[:20].tolist()}"
        )
    names = [str(s) for s in z["target_names"]] if "target_names" in z.files else None
    if names is None:
        names = [f"target_{i}" for i in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise DataError(f"{path}: {len(names)} target_names for {y.shape[1]} target columns")
    if cfg.resize is not None:
        raise DataError(
            f"{path}: resize is not supported for .npz arrays; store them at the size you need"
        )
    h = images.shape[2]
    if cfg.crop > h or cfg.crop > images.shape[3]:
        raise DataError(f"{path}: crop {cfg.crop} is larger than the images ({images.shape[2:]})")
    arr = images if cfg.crop == h == images.shape[3] else _CroppedArray(images, cfg.crop)
    catalog = pd.DataFrame({"objID": objid})
    for i, name in enumerate(names):
        catalog[name] = y[:, i]
    return GalaxyData(
        objid=objid,
        y=y,
        target_names=names,
        images=arr,
        catalog=catalog,
        fingerprint=array_fingerprint(images, y, objid),
    )


def array_fingerprint(images: np.ndarray, y: np.ndarray, objid: np.ndarray) -> str:
    """16-hex SHA-256 of every byte of in-memory galaxies (images streamed in 64 MiB blocks).

    Args:
        images: (N, 3, H, W) uint8 as stored (before any crop).
        y: (N, T) targets. objid: (N,) IDs.
    """
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(y).tobytes())
    digest.update(np.ascontiguousarray(objid).astype(str).astype(bytes).tobytes())
    flat = np.ascontiguousarray(images).reshape(-1)
    block = 1 << 26
    for start in range(0, flat.size, block):
        digest.update(memoryview(flat[start : start + block]))
    return digest.hexdigest()[:16]


def _load_folder(path: Path, cfg: DataConfig, require_targets: bool = True) -> GalaxyData:
    from sfnet.data import catalog as cat
    from sfnet.data import store

    cat_path = cat.find_catalog(path)
    table = cat.read_catalog(cat_path)
    missing = [c for c in cat.TARGET_COLUMNS[cfg.target] if c not in table.columns]
    if missing and not require_targets:
        names = cat.target_names(cfg.target)
        sel = cat.TargetSelection(
            catalog=table.reset_index(drop=True),
            y=np.full((len(table), len(names)), np.nan, dtype=np.float32),
            names=names,
            cuts=[cat.Cut(name="quality cuts", skipped=True, reason=f"no {', '.join(missing)}")],
        )
    else:
        sel = cat.select_target(table, cfg.target, source=str(cat_path))
    cuts = list(sel.cuts)
    y = sel.y
    # Images that `sfnet prepare --skip-bad` dropped (listed in bad_images.txt) are a counted cut.
    dropped = set(store.skipped_objids(path, cfg.crop, cfg.resize))
    if dropped:
        keep = ~sel.catalog["objID"].astype(str).isin(dropped).to_numpy()
        cuts.append(cat.Cut(name="image usable (prepare --skip-bad)", removed=int((~keep).sum())))
        sel.catalog = sel.catalog.loc[keep].reset_index(drop=True)
        y = y[keep]
        if len(y) == 0:
            raise DataError(f"{path}: no galaxy left after dropping the bad images")
    objid = sel.catalog["objID"].to_numpy()
    fp = store.fingerprint(path)
    images = store.open_images(path, objid, crop=cfg.crop, resize=cfg.resize, folder_fingerprint=fp)
    return GalaxyData(
        objid=objid,
        y=y,
        target_names=list(sel.names),
        images=images,
        catalog=sel.catalog,
        fingerprint=fp,
        cuts=cuts,
    )


def save_npz(
    path: Path, images: np.ndarray, y: np.ndarray, objid: Sequence, target_names: Sequence[str]
) -> None:
    """Write a packed array file readable by :func:`load_dataset` (atomically).

    Args:
        images: (N, 3, H, W) uint8.
        y: (N, T) targets in physical units.
        objid: (N,) int64 or str IDs.
        target_names: T names.
    """
    from sfnet.io import atomic_write

    def _write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                images=np.asarray(images, dtype=np.uint8),
                y=np.asarray(y, dtype=np.float32),
                objID=np.asarray(objid),
                target_names=np.asarray(list(target_names), dtype=str),
            )

    atomic_write(Path(path), _write)
