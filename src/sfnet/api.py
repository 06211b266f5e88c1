"""The Python entry points: open data, train, load a run, predict, read its features.

Thin convenience code over the modules the command line uses (no second implementation):
:func:`open_dataset` wraps :func:`sfnet.data.dataset.load_dataset`, :func:`train_run` wraps
:func:`sfnet.train.fit`, :class:`Run` extends :class:`sfnet.runs.Run` with predictions
(:mod:`sfnet.predict`), tables (:mod:`sfnet.outputs.tables`), the feature analysis and figures.

Example:
    >>> import sfnet
    >>> sfnet.synthesize("survey", n=256, size=48)
    >>> run = sfnet.train_run("survey", target="metallicity", k=4, out="runs/z", epochs=3, crop=48)
    >>> run.feature_table()
    >>> run.predict(new_images, format="astropy")
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfnet import runs
from sfnet.config import ConfigError, DataConfig, RunConfig
from sfnet.data.dataset import GalaxyData
from sfnet.errors import DataError, UserError

#: Default centre crop when none is given: the paper's 144 px, or the whole image if smaller.
DEFAULT_CROP = 144


# ---------------------------------------------------------------------------------- data


def open_dataset(
    source: str | Path | np.ndarray,
    catalog: pd.DataFrame | None = None,
    *,
    target: str = "metallicity",
    crop: int | None = None,
    resize: int | None = None,
) -> GalaxyData:
    """Open galaxies for training, prediction or analysis.

    Args:
        source: a dataset folder (catalog + ``images/``, packed store used when present), a
            packed ``.npz`` array file, or an in-memory (N, 3, H, W) uint8 array of gri images
            (RGB order, 0.262"/px).
        catalog: for an array only: N catalog rows aligned with the images (MPA-JHU column
            names; fluxes in 1e-17 erg/s/cm^2). With the target columns present the paper's
            quality cuts select rows; without a catalog the objIDs are 0..N-1 and targets NaN.
        target: ``metallicity`` (oh_p50, dex) or ``bpt_lines`` (log10 line fluxes).
        crop: centre crop in pixels (default: 144, or the whole image if smaller).
        resize: resize images to this side before cropping (folders only).

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
        size = crop or min(DEFAULT_CROP, _native_size(path, resize))
        cfg = DataConfig(path=str(path), target=target, crop=size, resize=resize)
        cfg.validate()
        data = load_dataset(cfg, require_targets=False)
        data.config = cfg  # where it came from: lets train_run() and Run reopen it
        return data
    return _array_dataset(np.asarray(source), catalog, target, crop)


def _native_size(path: Path, resize: int | None) -> int:
    """Side in pixels of the stored images (after ``resize``) of a folder or .npz file."""
    if resize:
        return resize
    if path.is_file() and path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "images" in z.files:
                return int(min(z["images"].shape[-2:]))
        return DEFAULT_CROP
    from sfnet.data import store

    if not path.is_dir():
        return DEFAULT_CROP  # load_dataset names the problem
    side = store.stored_side(path, None)
    if side is not None:
        return side
    first = next(iter(sorted(store.image_index(path).values())), None)
    if first is None:
        return DEFAULT_CROP
    try:
        return int(min(store.decode_image(first, None).shape[1:]))
    except store.BadImage as e:
        raise DataError(f"{first}: {e}") from None


def _check_images(arr: np.ndarray, what: str = "images") -> np.ndarray:
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 3:
        raise DataError(f"{what} must be (N, 3, H, W) uint8, got {arr.shape} {arr.dtype}")
    return arr


def _centre_crop(arr: np.ndarray, crop: int, what: str = "images") -> np.ndarray:
    h, w = arr.shape[-2:]
    if crop > h or crop > w:
        raise DataError(f"{what} are {w}x{h} px, smaller than the crop {crop}")
    y0, x0 = (h - crop) // 2, (w - crop) // 2
    return np.ascontiguousarray(arr[..., y0 : y0 + crop, x0 : x0 + crop])


def _array_dataset(
    arr: np.ndarray, catalog: pd.DataFrame | None, target: str, crop: int | None
) -> GalaxyData:
    from sfnet.data import catalog as cat
    from sfnet.data.dataset import array_fingerprint

    arr = _check_images(arr)
    names = cat.target_names(target)
    if catalog is None:
        catalog = pd.DataFrame({"objID": np.arange(len(arr), dtype=np.int64)})
    if len(catalog) != len(arr):
        raise DataError(f"catalog has {len(catalog)} rows for {len(arr)} images")
    catalog = catalog.reset_index(drop=True)
    if "objID" not in catalog.columns:
        catalog.insert(0, "objID", np.arange(len(arr), dtype=np.int64))
    cuts: list[Any] = []
    if all(c in catalog.columns for c in cat.TARGET_COLUMNS[target]):
        sel = cat.select_target(catalog.assign(_row=np.arange(len(arr))), target, "catalog")
        rows = sel.catalog.pop("_row").to_numpy()
        catalog, y, cuts, arr = sel.catalog, sel.y, list(sel.cuts), arr[rows]
    else:
        y = np.full((len(arr), len(names)), np.nan, dtype=np.float32)
    arr = _centre_crop(arr, crop or min(DEFAULT_CROP, *arr.shape[-2:]))
    objid = catalog["objID"].to_numpy()
    return GalaxyData(objid, y, names, arr, catalog, array_fingerprint(arr, y, objid), cuts)


# ------------------------------------------------------------------------------ training


def _config_from_options(cfg: RunConfig, options: dict[str, Any]) -> RunConfig:
    aliases = {"workers": "num_workers", "batch": "batch_size"}
    sections = [cfg.data, cfg.model, cfg.train]
    for key, value in options.items():
        name = aliases.get(key, key)
        owner = next((s for s in sections if name in {f.name for f in dataclasses.fields(s)}), None)
        if owner is None or name == "path":
            raise ConfigError(f"train_run(): unknown option {key!r}")
        setattr(owner, name, value)
    cfg.validate()
    return cfg


def train_run(
    data: str | Path | GalaxyData,
    target: str = "metallicity",
    k: int | None = 4,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    **options: Any,
) -> Run:
    """Train a Sparse Feature Network into a run folder and return the loaded :class:`Run`.

    The same recipe and files as ``sfnet train`` (config.toml, model.safetensors,
    model.json, metrics.jsonl).

    Args:
        data: a dataset folder or ``.npz`` path, or galaxies from :func:`open_dataset` (an
            in-memory dataset is saved as ``data.npz`` in the run folder so the run can be
            analysed later).
        target: ``metallicity`` (oh_p50, dex) or ``bpt_lines`` (log10 of four line fluxes).
        k: active features per galaxy; None trains the dense baseline.
        out: the run folder to create (required; refused if it exists, unless ``overwrite``).
        overwrite: replace an existing run folder.
        progress: show a progress bar per epoch (off by default: library code is silent).
        **options: any field of :class:`~sfnet.config.DataConfig`,
            :class:`~sfnet.config.ModelConfig` or :class:`~sfnet.config.TrainConfig` (the CLI
            options): ``epochs``, ``batch_size``, ``lr``, ``schedule``, ``seed``,
            ``split_seed``, ``val_fraction``, ``crop`` (px), ``resize`` (px), ``pretrained``,
            ``device``, ``amp``, ``channels_last``, ``num_workers`` (alias ``workers``), ...

    Returns:
        The trained :class:`Run`.

    Example:
        >>> run = sfnet.train_run("survey", target="metallicity", k=4, out="runs/z", epochs=5)
        >>> run.metrics()[-1]["val_rmse"]
        {'oh_p50': 0.09}
    """
    from sfnet.train import fit

    if out is None:
        raise UserError("train_run(): out= (the run folder to create) is required")
    out = Path(out)
    cfg = RunConfig()
    cfg.data.target, cfg.model.k = target, k
    in_memory = None
    if isinstance(data, GalaxyData):
        source = getattr(data, "config", None)
        if source is not None and source.target == target:
            cfg.data = dataclasses.replace(source)
            in_memory = data if "crop" not in options and "resize" not in options else None
        elif source is not None:
            data = source.data
        else:
            if not np.isfinite(np.asarray(data.y)).all():
                raise DataError("train_run(): the galaxies have no (finite) targets to learn")
            in_memory = data
            cfg.data.crop = int(data.images.shape[-1])
    if not isinstance(data, GalaxyData):
        cfg.data.path = str(data)
        cfg.data.crop = min(DEFAULT_CROP, _native_size(Path(data), options.get("resize")))
    cfg = _config_from_options(cfg, options)
    kept = in_memory is not None and getattr(in_memory, "config", None) is None
    if kept:  # written beside the run while it trains, then moved into it
        cfg.data.path = str(_save_in_memory(in_memory, out.parent / f".{out.name}.{runs.RUN_DATA}"))
    fit(cfg, out, overwrite=overwrite, progress=progress, data=in_memory)
    if kept:
        _move_data_into_run(Path(cfg.data.path), out)
    return Run.load(out)


def _save_in_memory(data: GalaxyData, path: Path) -> Path:
    """In-memory galaxies as a packed ``.npz`` (the file a run's config can point to)."""
    from sfnet.data.dataset import save_npz

    imgs = np.asarray(data.images[np.arange(len(data))])
    save_npz(path, imgs, data.y, data.objid, data.target_names)
    return path.resolve()


def _move_data_into_run(path: Path, out: Path) -> None:
    """Move the galaxies file into the finished run as ``data.npz`` and point config.toml at it
    (the .npz fingerprint hashes its content, so the run's data fingerprint still matches)."""
    os.replace(path, out / runs.RUN_DATA)
    cfg = RunConfig.load(out / runs.CONFIG)
    cfg.data.path = str((out / runs.RUN_DATA).resolve())
    cfg.save(out / runs.CONFIG)


# ----------------------------------------------------------------------------------- run


def _as_table(frame: pd.DataFrame, format: str, as_table: bool):
    fmt = "astropy" if as_table else format
    if fmt == "pandas":
        return frame
    if fmt == "astropy":
        from sfnet.outputs.tables import to_astropy

        return to_astropy(frame)
    raise UserError(f"format must be 'pandas' or 'astropy', got {format!r}")


class Run(runs.Run):
    """A trained run folder, loaded: predictions, features, the analysis and its figures.

    Attributes (from :class:`sfnet.runs.Run`): ``dir`` (Path), ``config`` (RunConfig),
    ``meta`` (RunMeta: k, target names, standardization, crop), ``model``
    (:class:`~sfnet.model.SparseFeatureNet` in eval mode).

    Inputs ``x`` of :meth:`predict` and :meth:`features` may be: a dataset folder or ``.npz``
    (or :class:`~sfnet.data.dataset.GalaxyData`), a folder of image files (objID = file
    stem), a NumPy array (N, 3, H, W) or (3, H, W) uint8 (centre-cropped to the run's crop;
    objID = 0..N-1), or a single PIL image.

    Example:
        >>> run = sfnet.Run.load("runs/z")
        >>> run.predict("new_cutouts/", format="astropy")   # objID, pred_oh_p50 [dex], ...
        >>> run.feature_figure()                             # top feature, inline in Jupyter
    """

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> Run:
        """Load a finished run folder (weights via safetensors, never unpickled).

        Example:
            >>> run = sfnet.Run.load("runs/z")
        """
        r = runs.load_run(Path(folder), device=device)
        return cls(r.dir, r.config, r.meta, r.model)

    # ------------------------------------------------------------------ inputs
    def _inputs(self, x: Any) -> tuple[np.ndarray, Any]:
        """(objid (N,), images (N, 3, crop, crop) uint8 array-like) of any accepted input."""
        crop, resize = int(self.meta.crop), self.meta.resize
        if isinstance(x, GalaxyData):
            return np.asarray(x.objid), x.images
        if isinstance(x, (str, Path)):
            path = Path(x)
            if path.is_dir() and not _has_catalog(path):
                return _image_folder(path, crop, resize)
            data = open_dataset(path, target=self.meta.target, crop=crop, resize=resize)
            return np.asarray(data.objid), data.images
        if type(x).__module__.startswith("PIL."):
            arr = _pil_to_array(x, resize)
            return np.zeros(1, dtype=np.int64), _centre_crop(arr, crop, "the image")
        arr = _check_images(np.asarray(x))
        return np.arange(len(arr), dtype=np.int64), _centre_crop(arr, crop)

    # ------------------------------------------------------------------ predictions
    def predict(
        self, x: Any, *, format: str = "pandas", as_table: bool = False, batch_size: int = 256
    ):
        """Predictions and active features of galaxies ``x`` (see the class for inputs).

        Returns:
            A pandas DataFrame (``format="pandas"``) or an astropy QTable
            (``format="astropy"`` or ``as_table=True``) with one row per galaxy: ``objID``,
            ``pred_<target>`` (oh_p50 in dex; log10 line fluxes in dex(1e-17 erg/s/cm^2)),
            ``feature_j`` / ``activation_j`` for j = 1..k (index -1 and 0 where inactive).

        Example:
            >>> run.predict(np.zeros((2, 3, 64, 64), np.uint8), as_table=True)
        """
        from sfnet.predict import predict, table_of_predictions

        objid, images = self._inputs(x)
        pred = predict(self, images, batch_size=batch_size)
        frame = table_of_predictions(objid, list(self.meta.target_names), pred)
        return _as_table(frame, format, as_table)

    def features(
        self,
        x: Any,
        *,
        pooled: bool = False,
        format: str = "pandas",
        as_table: bool = False,
        batch_size: int = 256,
    ):
        """Feature activations of galaxies ``x`` (see the class for inputs).

        Args:
            pooled: False (default): the sparse features after TopK (raw activations, not
                scaled; 0 = inactive), one column per feature active in any of these galaxies,
                named by label (``Z61``, ``SL17``). True: all d = 512 pooled features after
                the ReLU, before TopK (the dense representation), columns ``f0`` .. ``f511``.

        Returns:
            DataFrame (or astropy QTable) with ``objID`` and the feature columns (float32).

        Example:
            >>> run.features("examples/sdss-metallicity-400").iloc[:, :4]
        """
        from sfnet.analysis.activations import feature_label
        from sfnet.predict import pooled_features, predict

        objid, images = self._inputs(x)
        if pooled or self.meta.k is None:
            dense = pooled_features(self, images, batch_size=batch_size)
            cols = {f"f{j}": dense[:, j] for j in range(dense.shape[1])}
        else:
            pred = predict(self, images, batch_size=batch_size)
            dense = np.zeros((len(objid), int(self.meta.d)), np.float32)
            np.put_along_axis(dense, pred.indices, pred.values, axis=1)
            active = np.flatnonzero((dense > 0).any(axis=0))
            label = lambda f: feature_label(self.meta.target, int(f))  # noqa: E731
            cols = {label(f): dense[:, f] for f in active}
        frame = pd.concat([pd.DataFrame({"objID": objid}), pd.DataFrame(cols)], axis=1)
        return _as_table(frame, format, as_table)

    # ------------------------------------------------------------------ analysis
    def data(self) -> GalaxyData:
        """The run's own galaxies (its ``config.data``), loaded once."""
        if "_data" not in self.__dict__:
            self.__dict__["_data"] = self.load_data()
        return self.__dict__["_data"]

    def activations(self, split: str = "val"):
        """Top-k activations of the run's galaxies (``val`` split as in the paper, or ``all``).

        Reuses ``activations.npz`` when it matches the weights and split; otherwise computes
        and stores it there (the file ``sfnet analyze`` uses).

        Returns:
            :class:`sfnet.analysis.activations.SparseActivations`: (N, k) ``indices`` and ``values``.
        """
        from sfnet.analysis.activations import SparseActivations, compute_activations, model_sha

        path = self.dir / runs.ACTIVATIONS
        if path.is_file():
            acts = SparseActivations.load(path)
            if acts.split == split and acts.model_sha == model_sha(self.dir):
                return acts
        acts = compute_activations(self, self.data(), split=split)
        acts.save(path)
        return acts

    def feature_table(self, n: int | None = None, split: str = "val") -> pd.DataFrame:
        """The paper's Table 1 for this run: the ``n`` most frequent features (default 2k).

        Returns:
            One row per feature: feature, label, f_activated (0-1), mean_activation,
            max_activation, mean_strength (mean A_f), correlates (Spearman rho of A_f with
            catalog columns), ``true_correlates`` (synthetic data), and per target ``w_<name>``
            (dex per unit A_f) from the equations.

        Example:
            >>> run.feature_table(4)[["label", "f_activated", "correlates"]]
        """
        from sfnet.analysis.activations import feature_stats, feature_table, rank_features

        acts = self.activations(split)
        stats = feature_stats(acts)
        ranked = rank_features(stats.frequency)
        feats = ranked[: n or 2 * int(self.meta.k or 1)]
        catalog = self.data().catalog.iloc[acts.rows].reset_index(drop=True)
        table = feature_table(acts, feats, self.meta.target, catalog, stats=stats)
        for e in self.equations(split).equations:
            table[f"w_{e.name}"] = [e.coefficient(int(f)) for f in feats]
        return table

    def equations(self, split: str = "val"):
        """The linear equations target = intercept + sum_f w_f A_f, in physical units (dex).

        Returns:
            :class:`sfnet.analysis.equations.EquationSet` (``.equations``, ``.to_dict()``);
            :meth:`equations_markdown` formats them as text.
        """
        from sfnet.analysis.equations import equations_for_run

        return equations_for_run(self, self.activations(split), self.meta.target)

    def equations_markdown(self, n_terms: int = 8, split: str = "val") -> str:
        """The equations as markdown text (one line per target, then a table of the terms).

        Example:
            >>> from IPython.display import Markdown; Markdown(run.equations_markdown(4))
        """
        from sfnet.analysis.equations import to_markdown

        return to_markdown(self.equations(split), n_terms=n_terms)

    def _feature(self, feature: int | str | None, acts) -> int:
        from sfnet.analysis.activations import LABEL_PREFIX, feature_stats, rank_features

        if feature is None:
            return int(rank_features(feature_stats(acts).frequency)[0])
        if isinstance(feature, str):
            return int(feature.removeprefix(LABEL_PREFIX.get(self.meta.target, "")))
        return int(feature)

    def _top_images(self, acts, feature: int, n: int = 9) -> tuple[np.ndarray, np.ndarray]:
        from sfnet.analysis.activations import top_activating

        pos, raw = top_activating(acts, feature, n)
        rows = acts.rows[pos]
        order = np.argsort(rows, kind="stable")
        imgs = np.asarray(self.data().images[rows[order]])
        out = np.empty_like(imgs)
        out[order] = imgs
        return out, raw

    def feature_figure(self, feature: int | str | None = None, split: str = "val"):
        """One feature: its 3x3 grid of most strongly activating galaxies with A_f, beside a
        BPT diagram coloured by A_f when the catalog has the four line fluxes.

        Args:
            feature: index (0..511), label (``"Z61"``) or None for the most frequent feature.

        Returns:
            :class:`matplotlib.figure.Figure` (displays inline in Jupyter).

        Example:
            >>> run.feature_figure("Z61")
        """
        from sfnet.analysis.activations import feature_label, feature_stats, scaled_strength
        from sfnet.outputs.plots import feature_figure

        acts = self.activations(split)
        f = self._feature(feature, acts)
        stats = feature_stats(acts)
        if not 0 <= f < acts.d or stats.max[f] <= 0:
            raise UserError(f"feature {feature!r} is never active on the {split} galaxies")
        imgs, raw = self._top_images(acts, f)
        strength = scaled_strength(acts, [f], stats.max)[:, 0]
        xy = _bpt_xy(self.data().catalog.iloc[acts.rows])
        bpt = None if xy is None else (xy[0], xy[1], strength)
        label = feature_label(self.meta.target, f)
        return feature_figure(
            label, imgs, raw / stats.max[f], bpt=bpt, f_activated=float(stats.frequency[f])
        )

    def training_curves(self):
        """Train loss, validation RMSE (dex) and learning rate per epoch (``metrics.jsonl``).

        Returns:
            :class:`matplotlib.figure.Figure`.

        Example:
            >>> run.training_curves()
        """
        from sfnet.outputs.plots import training_curves_figure

        return training_curves_figure(self.metrics())

    def atlas(self, **options: Any) -> Path:
        """Run the full analysis (if not done) and write the HTML feature atlas.

        Args:
            **options: fields of :class:`sfnet.workflows.analyze.AnalysisOptions` (``split``,
                ``n_features``, ``dense``, ``pdf``, ...); giving any re-runs the analysis.

        Returns:
            Path of ``report.html`` in the run folder.

        Example:
            >>> run.atlas()
            PosixPath('runs/z/report.html')
        """
        from sfnet.outputs.report import write_report
        from sfnet.workflows.analyze import AnalysisOptions

        return write_report(self.dir, AnalysisOptions(**options) if options else None)


def _has_catalog(folder: Path) -> bool:
    from sfnet.data.catalog import find_catalog

    try:
        find_catalog(folder)
    except DataError:
        return False
    return True


def _image_folder(folder: Path, crop: int, resize: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Every image file in ``folder`` (or ``folder/images``), sorted by name, decoded."""
    from sfnet.data import store

    base = folder / store.IMAGES_DIR if (folder / store.IMAGES_DIR).is_dir() else folder
    files = sorted(p for p in base.iterdir() if p.is_file() and store._strip_ext(p.name))
    if not files:
        raise DataError(f"{folder}: no image files (and no catalog)")
    out = np.empty((len(files), 3, crop, crop), np.uint8)
    for i, p in enumerate(files):
        try:
            out[i] = store.decode_image(p, crop, resize)
        except store.BadImage as e:
            raise DataError(f"{p}: {e}") from None
    return np.array([store._strip_ext(p.name)[0] for p in files], dtype=object), out


def _pil_to_array(image: Any, resize: int | None) -> np.ndarray:
    from PIL import Image

    img = image.convert("RGB")
    if resize is not None and img.size != (resize, resize):
        img = img.resize((resize, resize), Image.Resampling.BICUBIC)
    return np.asarray(img).transpose(2, 0, 1)[None].copy()


def _bpt_xy(catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(log [NII]/Ha, log [OIII]/Hb) from the catalog's line fluxes, or None without them."""
    from sfnet.physics import BPT_LINES, bpt_ratios

    if not all(c in catalog.columns for c in BPT_LINES):
        return None
    flux = catalog[list(BPT_LINES)].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return bpt_ratios(np.log10(np.where(flux > 0, flux, np.nan)))
