"""The run folder: everything a later command needs, read back without re-typing anything.

``runs/NAME/``
  ``config.toml``        the RunConfig (data, model, train)
  ``model.safetensors``  final weights (no pickle)
  ``model.json``         RunMeta: architecture, target names and standardization, image
                         normalization, split seed, data fingerprint
  ``metrics.jsonl``      one JSON record per epoch
  ``checkpoint.pt``      last epoch-end training state and the metrics history so far (for
                         ``--resume``; tensors and plain values only)

written by ``sfnet analyze`` / ``sfnet report`` (:mod:`sfnet.workflows.analyze`, :mod:`sfnet.outputs.report`):

  ``activations.npz``    sparse top-k activations of the analysed galaxies
  ``features.csv``       the feature table
  ``equations.md/json``  linear equations in physical units
  ``groundtruth.json``   interpretability against the true factors (synthetic data)
  ``figures/``           figures
  ``analysis.json``      the analysis summary (written last)
  ``report.html``        the feature atlas

written by ``sfnet explain`` (:mod:`sfnet.workflows.explain`):

  ``explain/``           ``<objID>.png`` and ``<objID>.json`` per explained galaxy

This module is the only place that knows these names; :func:`default_device` and
:func:`same_config` are the one device choice and the one "same settings?" check.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import tomllib

from sfnet import __version__
from sfnet.config import INFERENCE_BATCH, ConfigError, RunConfig
from sfnet.errors import RunFolderError, UserError
from sfnet.io import (
    atomic_write,
    atomic_write_json,
    atomic_write_target,
    foreign_entries,
    remove_tree,
    replace_dir,
)

if TYPE_CHECKING:  # torch is imported where it is used: the file names above need no torch
    import torch

    from sfnet.data.batches import Normalization
    from sfnet.data.dataset import GalaxyData
    from sfnet.data.galaxies import Galaxies
    from sfnet.model import SparseFeatureNet
    from sfnet.precision import Precision

CONFIG = "config.toml"
WEIGHTS = "model.safetensors"
META = "model.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
ACTIVATIONS = "activations.npz"
FEATURES_TABLE = "features.csv"
EQUATIONS_MD = "equations.md"
EQUATIONS_JSON = "equations.json"
GROUNDTRUTH = "groundtruth.json"
FIGURES = "figures"
ANALYSIS = "analysis.json"
REPORT = "report.html"
EXPLAIN = "explain"
#: In-memory galaxies a run was trained on (:func:`sfnet.workflows.train.train_run` keeps them with the run).
RUN_DATA = "data.npz"

#: ``model.json``'s ``"format"``: marks a folder as written by sfnet (:func:`is_run_folder`).
RUN_FORMAT = "sfnet-run"

#: Train settings a run may continue with different values (hardware only, not the result).
HARDWARE_FIELDS = ("device", "amp", "channels_last", "num_workers")


def default_device(requested: str = "auto") -> torch.device:
    """The torch device for ``requested`` (``auto``: CUDA when available, else CPU).

    Raises:
        ConfigError: ``cuda`` requested but no CUDA device is available.
    """
    import torch

    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if requested not in ("cuda", "auto"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    if not torch.cuda.is_available():
        raise ConfigError("device is 'cuda' but no CUDA device is available")
    return torch.device("cuda")


def same_config(
    a: RunConfig | dict, b: RunConfig | dict, *, ignore_train: tuple[str, ...] = ()
) -> bool:
    """True when two run configs (objects, ``to_dict()`` results or raw ``config.toml`` tables)
    hold the same settings, the ``train`` fields named in ``ignore_train`` aside; data paths
    are compared resolved."""

    def _plain(c: RunConfig | dict) -> dict:
        d = c.to_dict() if isinstance(c, RunConfig) else c
        d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
        for f in ignore_train:
            d.get("train", {}).pop(f, None)
        if d.get("data", {}).get("path"):  # runs of sfnet 0.1 stored the path as typed
            d["data"]["path"] = str(Path(d["data"]["path"]).resolve())
        return d

    return _plain(a) == _plain(b)


@dataclass
class RunMeta:
    """What ``model.json`` holds.

    Attributes:
        k: active features (None = dense baseline). d: pooled feature width.
        target_mean, target_std: per-target standardization (physical units) from the
            training split; predictions = mean + std * network output.
        image_mean, image_std: per-channel normalization of images scaled to [0, 1].
        data_fingerprint: hash of the catalog + images the model was trained on.
        precision: how it was trained (:meth:`sfnet.precision.Precision.to_dict`: autocast
            dtype, channels_last, reason); None in runs of sfnet before it was recorded.
        encoder: a timm trunk's architecture, normalisation and pretrained weights' identity
            (:meth:`sfnet.model.EncoderSpec.record`); None for torchvision's resnet18.
    """

    k: int | None
    d: int
    backbone: str
    target: str
    target_names: list[str]
    target_mean: list[float]
    target_std: list[float]
    image_mean: list[float]
    image_std: list[float]
    split_seed: int
    val_fraction: float
    data_fingerprint: str
    n_train: int
    n_val: int
    crop: int
    resize: int | None = None
    epochs_completed: int = 0
    sfnet_version: str = __version__
    precision: dict | None = None
    encoder: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def normalization(self) -> Normalization:
        from sfnet.data.batches import Normalization

        return Normalization(tuple(self.image_mean), tuple(self.image_std))

    def to_physical(self, standardized: np.ndarray) -> np.ndarray:
        """(N, T) standardized outputs -> physical units."""
        return np.asarray(standardized) * np.asarray(self.target_std) + np.asarray(self.target_mean)

    def save(self, path: Path) -> None:
        atomic_write_json(path, {"format": RUN_FORMAT, **dataclasses.asdict(self)})

    @classmethod
    def load(cls, path: Path) -> RunMeta:
        """Read and validate ``model.json`` (types, ranges, finite standardization).

        Raises:
            RunFolderError: one line naming the file and the key that is missing or wrong.
        """
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise RunFolderError(f"{path}: missing (is this a finished sfnet run?)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunFolderError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise RunFolderError(f"{path}: expected a JSON object, got a {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in d]
        if missing:
            raise RunFolderError(f"{path}: missing key {', '.join(map(repr, missing))}")
        meta = cls(**{k: v for k, v in d.items() if k in fields})
        problem = meta._problem()
        if problem:
            raise RunFolderError(f"{path}: {problem}")
        return meta

    def _problem(self) -> str | None:
        """What is wrong with these values ("" / None when nothing)."""

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def floats(name: str, n: int | None = None) -> str | None:
            v = getattr(self, name)
            if not isinstance(v, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
            ):
                return f"{name!r} must be a list of numbers, got {v!r}"[:200]
            if n is not None and len(v) != n:
                return f"{name!r} has {len(v)} values, expected {n}"
            if not all(math.isfinite(x) for x in v):
                return f"{name!r} has non-finite values {v}"
            return None

        for name in ("d", "split_seed", "n_train", "n_val", "crop", "epochs_completed"):
            v = getattr(self, name)
            if not is_int(v) or v < (1 if name in ("d", "crop") else 0):
                return (
                    f"{name!r} must be an integer >= {1 if name in ('d', 'crop') else 0}, got {v!r}"
                )
        if self.k is not None and (not is_int(self.k) or not 1 <= self.k <= self.d):
            return f"'k' must be null or an integer in 1..d={self.d}, got {self.k!r}"
        if self.resize is not None and (not is_int(self.resize) or self.resize < self.crop):
            return f"'resize' must be null or an integer >= crop={self.crop}, got {self.resize!r}"
        for name in ("backbone", "target", "data_fingerprint", "sfnet_version"):
            if not isinstance(getattr(self, name), str):
                return f"{name!r} must be a string, got {getattr(self, name)!r}"
        names = self.target_names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            return f"'target_names' must be a non-empty list of strings, got {names!r}"
        for name, n in (("target_mean", len(names)), ("target_std", len(names))):
            if (p := floats(name, n)) is not None:
                return p
        for name in ("image_mean", "image_std"):
            if (p := floats(name, 3)) is not None:
                return p
        if min(self.target_std) <= 0 or min(self.image_std) <= 0:
            return "'target_std' and 'image_std' must be > 0"
        vf = self.val_fraction
        if not isinstance(vf, (int, float)) or isinstance(vf, bool) or not 0 < vf <= 0.5:
            return f"'val_fraction' must be a number in (0, 0.5], got {vf!r}"
        p = self.precision
        if p is not None and (
            not isinstance(p, dict)
            or p.get("autocast") not in ("bfloat16", "float32")
            or not isinstance(p.get("channels_last"), bool)
        ):
            return (
                '\'precision\' must be null or {"autocast": "bfloat16"|"float32", '
                f'"channels_last": true|false}}, got {p!r}'
            )[:240]
        if not isinstance(self.extra, dict):
            return f"'extra' must be an object, got {self.extra!r}"[:200]
        return None

    def check_config(self, config: RunConfig, path: Path) -> None:
        """Refuse a ``model.json`` that contradicts the run's ``config.toml``.

        Raises:
            RunFolderError: naming both files and the first value that differs.
        """
        pairs = (
            ("k", self.k, "model.k", config.model.k),
            ("backbone", self.backbone, "model.backbone", config.model.backbone),
            ("target", self.target, "data.target", config.data.target),
            ("crop", self.crop, "data.crop", config.data.crop),
            ("resize", self.resize, "data.resize", config.data.resize),
            ("split_seed", self.split_seed, "data.split_seed", config.data.split_seed),
            ("val_fraction", self.val_fraction, "data.val_fraction", config.data.val_fraction),
        )
        for key, mine, theirs, value in pairs:
            if mine != value:
                raise RunFolderError(
                    f"{path}: {key} = {mine!r} but {Path(path).parent / CONFIG} has "
                    f"{theirs} = {value!r}; the run folder is inconsistent (retrain it)"
                )


def read_metrics(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (empty when it does not exist).

    Raises:
        RunFolderError: a line that is not a JSON object, naming the file and line number.
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise RunFolderError(
                f"{path}: line {n} is not a JSON record ({getattr(e, 'msg', e)}); remove or "
                "fix that line (sfnet writes one JSON object per epoch)"
            ) from None
        if not isinstance(rec, dict):
            raise RunFolderError(f"{path}: line {n} is not a JSON object: {line[:80]!r}")
        records.append(rec)
    return records


def final_val_rmse(run_dir: Path) -> dict[str, float]:
    """Validation RMSE per target (physical units) of the last epoch in ``metrics.jsonl``."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise RunFolderError(f"{path}: missing")
    records = read_metrics(path)
    if not records:
        raise RunFolderError(f"{path}: empty")
    if "val_rmse" not in records[-1]:
        raise RunFolderError(f"{path}: last record has no 'val_rmse'")
    return {str(k): float(v) for k, v in records[-1]["val_rmse"].items()}


def build_model(meta: RunMeta) -> SparseFeatureNet:
    """An untrained network of the architecture recorded in ``meta``."""
    from sfnet.model import SparseFeatureNet

    return SparseFeatureNet(
        meta.k, len(meta.target_names), backbone=meta.backbone, encoder=meta.encoder
    )


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write the model's state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(Path(path), lambda tmp: save_file(state, str(tmp)))


def is_finished(run_dir: Path) -> bool:
    """True when the run has final weights, metadata and all its epochs recorded."""
    run_dir = Path(run_dir)
    if not ((run_dir / WEIGHTS).is_file() and (run_dir / META).is_file()):
        return False
    try:
        cfg = RunConfig.load(run_dir / CONFIG)
        meta = RunMeta.load(run_dir / META)
    except Exception:  # noqa: BLE001 - anything unreadable means "not finished"
        return False
    return meta.epochs_completed >= cfg.train.epochs


def _as_table(
    frame: pd.DataFrame, format: str, as_table: bool, units: dict[str, str] | None = None
):
    fmt = "astropy" if as_table else format
    if fmt == "pandas":
        return frame
    if fmt == "astropy":
        from sfnet.outputs.tables import to_astropy

        return to_astropy(frame, units)
    raise UserError(f"format must be 'pandas' or 'astropy', got {format!r}")


@dataclass
class Run:
    """A trained run folder, loaded: predictions, features, the analysis and its figures.

    Load one with :meth:`Run.load` (or :func:`load_run`), the one loading path of every entry
    point (CLI, Python, notebooks, compare, reproduce): it restores everything ``model.json``
    records (architecture, k, standardization, image normalization, resize and crop, and the
    precision the run was trained at), so the Python API and ``sfnet predict`` give identical
    numbers.

    Attributes:
        dir: the run folder. config: its :class:`~sfnet.config.RunConfig` (``config.toml``).
        meta: :class:`RunMeta` (``model.json``: k, target names, standardization, crop, resize).
        model: :class:`~sfnet.model.SparseFeatureNet` in eval mode, in its memory format.
        precision: :class:`~sfnet.precision.Precision` every forward pass runs at (the one
            recorded in ``model.json``; ``run.precision.name`` says e.g. ``bf16+channels_last``).

    Inputs ``x`` of :meth:`predict`, :meth:`features`, :meth:`evaluate` and :meth:`explain`
    (see :func:`sfnet.data.galaxies.open_galaxies`): None (the run's own data), a dataset
    folder or ``.npz``, :class:`~sfnet.data.dataset.GalaxyData`, a folder of image files
    (objID = file stem), a NumPy array (N, 3, H, W) or (3, H, W) uint8 (objID = 0..N-1), a PIL
    image or a list of them. Every image gets the run's ``resize`` (when it has another size),
    then the run's centre crop; smaller images are refused.

    Example:
        >>> run = sfnet.Run.load("runs/z")
        >>> run.precision.name
        'fp32+channels_last'
        >>> run.predict("new_cutouts/", format="astropy")   # objID, pred_oh_p50 [dex], ...
        >>> run.feature_figure()                             # top feature, inline in Jupyter
    """

    dir: Path
    config: RunConfig
    meta: RunMeta
    model: SparseFeatureNet
    precision: Precision | None = None  # None: fp32, contiguous

    def __post_init__(self) -> None:
        if self.precision is None:
            from sfnet.precision import FP32

            self.precision = FP32

    def __repr__(self) -> str:
        return (
            f"Run({str(self.dir)!r}, target={self.meta.target!r}, k={self.meta.k}, "
            f"crop={self.meta.crop}, resize={self.meta.resize}, precision={self.precision.name!r})"
        )

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> Run:
        """Load a finished run folder (weights via safetensors, never unpickled); the same as
        :func:`load_run`.

        Args:
            folder: the run folder. device: ``cpu``, ``cuda`` or ``auto``.

        Example:
            >>> run = sfnet.Run.load("runs/z")
            >>> run.meta.k, run.meta.target_names
            (4, ['oh_p50'])
        """
        return load_run(Path(folder), device=device)

    # ------------------------------------------------------------------ the run's own data
    def data(self) -> GalaxyData:
        """The galaxies the run was trained on (``config.data``, after the quality cuts), loaded
        once and checked against the model's targets.

        Returns:
            :class:`~sfnet.data.dataset.GalaxyData` (``objid``, ``y`` (N, T), ``images``,
            ``catalog``); :meth:`split` gives its train/validation rows.

        Example:
            >>> data = run.data()
            >>> train_idx, val_idx = run.split(len(data))
        """
        if "_data" not in self.__dict__:
            from sfnet.data.dataset import load_dataset

            data = load_dataset(self.config.data)
            if data.target_names != self.meta.target_names:
                raise RunFolderError(
                    f"{self.dir}: data targets {data.target_names} differ from the model's "
                    f"{self.meta.target_names}"
                )
            self.__dict__["_data"] = data
        return self.__dict__["_data"]

    def split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The run's (train_idx, val_idx) rows for its dataset of ``n`` galaxies (seeded as in
        training).

        Example:
            >>> train_idx, val_idx = run.split(len(run.data()))
        """
        from sfnet.data.batches import split_indices

        return split_indices(n, self.meta.val_fraction, self.meta.split_seed)

    def metrics(self) -> list[dict]:
        """The per-epoch records of ``metrics.jsonl``: ``epoch``, ``train_loss``, ``val_rmse``
        (target -> RMSE in physical units, dex), ``lr``, ...

        Example:
            >>> run.metrics()[-1]["val_rmse"]
            {'oh_p50': 0.11}
        """
        return read_metrics(self.dir / METRICS)

    def galaxies(self, x: Any = None) -> Galaxies:
        """Galaxies ``x`` (None: the run's own data folder) at the run's resize and crop, every
        galaxy that has an image (:func:`sfnet.data.galaxies.open_galaxies`).

        Returns:
            :class:`sfnet.data.galaxies.Galaxies`: ``objid``, ``images`` (N, 3, crop, crop),
            ``measured`` (N, T), ``status`` ("" / "no measurement" / "fails cut X").

        Example:
            >>> g = run.galaxies("new_cutouts/")
            >>> g.images.shape, g.status[:2]
        """
        from sfnet.data.galaxies import open_galaxies

        source = self.config.data.path if x is None else x
        return open_galaxies(
            source, target=self.meta.target, crop=int(self.meta.crop), resize=self.meta.resize
        )

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """The linear head, read once for every consumer (equations, maps, explain, reproduce):
        (weight (T, d), bias (T,)) float64, in standardized target units per unit activation.

        Example:
            >>> w, b = run.head()
            >>> w.shape
            (1, 512)
        """
        head = self.model.head
        return (
            head.weight.detach().cpu().double().numpy(),
            head.bias.detach().cpu().double().numpy(),
        )

    @property
    def units(self) -> dict[str, str]:
        """Unit of each target (name -> astropy unit string, e.g. ``"dex(solMass)"``): the
        built-in ones, or those of the run's catalog (FITS / ECSV) and target spec."""
        from sfnet.data.catalog import units_of

        return units_of(self.config.data.target, self.config.data.path)

    # ------------------------------------------------------------------ predictions
    def predict(
        self,
        x: Any = None,
        *,
        format: str = "pandas",
        as_table: bool = False,
        batch_size: int = INFERENCE_BATCH,
    ):
        """Predictions of galaxies ``x``: the table ``sfnet predict`` writes, row for row.

        Every galaxy with an image is predicted (no quality cut; galaxies without a
        measurement included).

        Returns:
            A pandas DataFrame (``format="pandas"``) or an astropy QTable (``format="astropy"``
            or ``as_table=True``), one row per galaxy: ``objID``; ``split`` (train / val /
            other, on the run's own data only); ``measured_<target>`` (NaN where none);
            ``passes_cuts`` and ``status`` ("" / "no measurement" / "fails cut <cut>");
            ``pred_<target>`` (oh_p50 in dex; log10 line fluxes in dex(1e-17 erg/s/cm^2));
            ``feature_j`` / ``label_j`` / ``activation_j`` for j = 1..k (index -1, label "" and
            0 where inactive).

        Example:
            >>> run.predict("examples/sdss-metallicity-400")[["objID", "split", "pred_oh_p50"]]
            >>> run.predict(np.zeros((2, 3, 64, 64), np.uint8), as_table=True)
        """
        from sfnet.predict import predict_table

        frame = predict_table(self, self.galaxies(x), batch_size=batch_size)
        return _as_table(frame, format, as_table, self.units)

    def features(
        self,
        x: Any = None,
        *,
        pooled: bool = False,
        format: str = "pandas",
        as_table: bool = False,
        batch_size: int = INFERENCE_BATCH,
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

        g = self.galaxies(x)
        if pooled or self.meta.k is None:
            dense = pooled_features(self, g.images, batch_size=batch_size)
            cols = {f"f{j}": dense[:, j] for j in range(dense.shape[1])}
        else:
            pred = predict(self, g.images, batch_size=batch_size)
            dense = np.zeros((len(g), int(self.meta.d)), np.float32)
            np.put_along_axis(dense, pred.indices, pred.values, axis=1)
            active = np.flatnonzero((dense > 0).any(axis=0))
            cols = {feature_label(self.meta.target, int(f)): dense[:, f] for f in active}
        frame = pd.concat([pd.DataFrame({"objID": g.objid}), pd.DataFrame(cols)], axis=1)
        return _as_table(frame, format, as_table)

    def evaluate(
        self, x: Any = None, split: str = "val", batch_size: int = INFERENCE_BATCH
    ) -> dict:
        """RMSE of the predictions against the measured targets (physical units, dex).

        Scored on the galaxies of ``x`` that have a measurement passing the target's quality
        cuts; on the run's own data (``x`` None) only on its ``split`` (``val``, ``train`` or
        ``all``), so ``evaluate()`` is the validation RMSE of the last epoch.

        Returns:
            ``{"rmse": {target: RMSE}, "n": galaxies scored}``.

        Example:
            >>> run.evaluate()
            {'rmse': {'oh_p50': 0.11}, 'n': 80}
            >>> run.evaluate("other_survey/")["rmse"]["oh_p50"]
        """
        if split not in ("val", "train", "all"):
            raise UserError(f"split must be 'val', 'train' or 'all', got {split!r}")
        t = self.predict(x, batch_size=batch_size)
        keep = t["passes_cuts"].to_numpy(bool).copy()
        if split != "all" and "split" in t.columns:
            keep &= (t["split"] == split).to_numpy()
        rmse = {}
        for name in self.meta.target_names:
            if f"measured_{name}" not in t.columns:
                raise UserError(f"{x}: no measured {name} to score against")
            err = t[f"pred_{name}"].to_numpy(np.float64) - t[f"measured_{name}"].to_numpy()
            rmse[name] = float(np.sqrt(np.mean(err[keep] ** 2))) if keep.any() else float("nan")
        return {"rmse": rmse, "n": int(keep.sum())}

    def explain(self, objid: Any, x: Any = None):
        """Why one galaxy got its prediction (what ``sfnet explain`` writes, without files).

        Any galaxy of ``x`` that has an image can be explained, measured or not.

        Args:
            objid: the galaxy's objID (or row number for an array / PIL input).
            x: where it is (None: the run's own data folder); see the class for inputs.

        Returns:
            (figure, dict): the :class:`matplotlib.figure.Figure` (cutout, contribution maps,
            waterfall from the intercept to the prediction, each active feature's map and
            top-activating galaxies) and the JSON ``sfnet explain`` writes (prediction,
            ``measured`` with ``status``, intercept, features with activation, A_f and
            contribution in physical units).

        Example:
            >>> fig, info = run.explain(1237648702973411443)
            >>> info["prediction"], info["status"]
            ({'oh_p50': 9.01}, 'passes cuts')
        """
        from sfnet.workflows.explain import explain_figures

        ((fig, info),) = explain_figures(self, self.galaxies(x), [objid])
        return fig, info

    # ------------------------------------------------------------------ analysis
    def activations(self, split: str = "val"):
        """Top-k activations of the run's galaxies (``val`` split as in the paper, or ``all``).

        Reuses ``activations.npz`` when it matches the weights and split; otherwise computes
        and stores it there (the file ``sfnet analyze`` uses).

        Returns:
            :class:`sfnet.analysis.activations.SparseActivations`: (N, k) ``indices`` and
            ``values``.

        Example:
            >>> acts = run.activations()
            >>> acts.indices.shape
            (80, 4)
        """
        from sfnet.analysis.activations import SparseActivations, compute_activations, model_sha

        path = self.dir / ACTIVATIONS
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

        Example:
            >>> run.equations().to_dict()
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
        from sfnet.workflows.analyze import AnalysisOptions, write_report

        return write_report(self.dir, AnalysisOptions(**options) if options else None)


def _bpt_xy(catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(log [NII]/Ha, log [OIII]/Hb) from the catalog's line fluxes, or None without them."""
    from sfnet.physics import BPT_LINES, bpt_ratios

    if not all(c in catalog.columns for c in BPT_LINES):
        return None
    flux = catalog[list(BPT_LINES)].to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return bpt_ratios(np.log10(np.where(flux > 0, flux, np.nan)))


def recorded_precision(meta: RunMeta, config: RunConfig, device: Any) -> Precision:
    """The precision ``model.json`` records (autocast dtype, channels-last), on ``device``'s type;
    runs of sfnet before it was recorded get :func:`sfnet.precision.choose_precision` of their
    ``amp`` / ``channels_last`` settings."""
    import torch

    from sfnet.precision import Precision, choose_precision

    if meta.precision is None:
        return choose_precision(device, config.train.amp, config.train.channels_last)
    p = meta.precision
    dtype = torch.bfloat16 if p["autocast"] == "bfloat16" else None
    return Precision(
        dtype,
        bool(p["channels_last"]),
        f"recorded in {META}: {p.get('reason', '')}".rstrip(": "),
        torch.device(device).type,
    )


def load_run(run_dir: Path, device: str | torch.device = "cpu") -> Run:
    """Load a finished run in eval mode: THE loading path of every entry point.

    Restores what ``model.json`` records (validated and cross-checked against
    ``config.toml``): architecture and k, standardization, image normalization, crop and
    resize, and the precision the run was trained at. Never unpickles (safetensors).

    Args:
        run_dir: the run folder. device: ``cpu``, ``cuda`` or ``auto``.

    Raises:
        RunFolderError: one line naming the missing or malformed file.
    """
    import torch
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder")
    for name in (CONFIG, META, WEIGHTS):
        if not (run_dir / name).is_file():
            raise RunFolderError(f"{run_dir}: missing {name} (unfinished or not an sfnet run)")
    config = RunConfig.load(run_dir / CONFIG)
    meta = RunMeta.load(run_dir / META)
    meta.check_config(config, run_dir / META)
    model = build_model(meta)
    try:
        state = load_file(str(run_dir / WEIGHTS))
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001
        raise RunFolderError(f"{run_dir / WEIGHTS}: cannot load weights ({e})") from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise RunFolderError(
            f"{run_dir / WEIGHTS}: non-finite weights in {', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''} (training diverged); retrain with a lower lr"
        )
    device = default_device(device) if isinstance(device, str) else device
    precision = recorded_precision(meta, config, device)
    model = precision.model(model.to(device)).eval()
    return Run(run_dir, config, meta, model, precision)


def load_checkpoint(path: Path, device: Any = "cpu") -> dict:
    """The training state of ``checkpoint.pt`` (``torch.load(weights_only=True)``: tensors and
    plain values only, never arbitrary pickled objects).

    Raises:
        RunFolderError: one line naming the file when it is empty, truncated, not a checkpoint
            or holds anything but tensors and plain values.
    """
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunFolderError(
            f"{path}: unreadable checkpoint ({type(e).__name__}: {first[:160]}); delete it to "
            "start the run again, or --overwrite"
        ) from None
    keys = ("model", "optimizer", "scheduler", "epoch", "data_fingerprint")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in keys):
        raise RunFolderError(
            f"{path}: not an sfnet checkpoint (expected a dict with {', '.join(keys)}); delete "
            "it to start the run again, or --overwrite"
        )
    return ckpt


# ------------------------------------------------------------------ replacing a run folder

#: Everything sfnet writes at the top of a run folder (train, analyze, report, explain); any
#: other entry is the user's, and ``--overwrite`` refuses to delete it.
RUN_ENTRIES = frozenset(
    {CONFIG, WEIGHTS, META, METRICS, CHECKPOINT, RUN_DATA, ACTIVATIONS, FEATURES_TABLE}
    | {EQUATIONS_MD, EQUATIONS_JSON, GROUNDTRUTH, FIGURES, ANALYSIS, REPORT, EXPLAIN}
)
#: What ``analyze`` writes in a run's ``figures/``; anything else there is the user's.
_FIGURE_FILE = re.compile(r"(?:(?:feature|maps)_.+|histograms|correlation|equations)\.(?:png|pdf)")
#: Keys of every explanation JSON ``sfnet explain`` writes (``OBJID.json``, beside ``OBJID.png``).
EXPLANATION_KEYS = frozenset({"run", "objID", "prediction", "features"})
#: Names that mark a folder as data (never deleted by ``--overwrite``).
DATA_MARKERS = ("galaxies.csv", "galaxies.parquet", "galaxies.fits", "images", "packed")
_STAGING = "staging"
_OLD = "old"


@dataclass
class StagedRun:
    """A new run trained in a hidden sibling of ``out`` until it has its first checkpoint.

    Attributes:
        out: the run folder asked for.
        path: where the new run is written until :meth:`commit` (``PARENT/.NAME.staging``).
    """

    out: Path
    path: Path
    committed: bool = False

    def commit(self) -> Path:
        """Swap the new run into ``out`` (atomically on Linux); the old run is removed."""
        remove_tree(_sibling(self.out, _OLD))
        replace_dir(self.path, self.out)
        self.committed = True
        return self.out

    def discard(self) -> None:
        """Remove the staging folder (the old run, if any, is untouched); a no-op once
        committed."""
        if not self.committed:
            remove_tree(self.path)


def staging_path(out: Path) -> Path:
    """Where a new run for ``out`` is trained before its first checkpoint."""
    return _sibling(Path(out), _STAGING)


def remove_leftovers(out: Path) -> None:
    """Remove ``.NAME.staging`` / ``.NAME.old`` beside ``out`` left by a killed start or swap
    (after a kill during :meth:`StagedRun.commit` the staging folder holds the *old* run).
    The caller holds ``out``'s lock and continues ``out`` itself (``--resume``)."""
    for kind in (_STAGING, _OLD):
        remove_tree(_sibling(Path(out), kind))


def is_run_folder(folder: Path) -> bool:
    """True when ``folder`` holds what sfnet writes into a run folder, judged by content, never
    by a file name alone: a ``config.toml`` with exactly sfnet's ``[data]``, ``[model]`` and
    ``[train]`` tables (each with a field sfnet knows), and a ``model.json`` (when present)
    that is an sfnet run's (``"format": "sfnet-run"``, or the fields of runs written before
    the marker)."""
    from sfnet.config import SECTIONS

    folder = Path(folder)
    try:
        with open(folder / CONFIG, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, ValueError):
        return False
    if set(cfg) != set(SECTIONS):
        return False
    for name, klass in SECTIONS.items():
        known = {f.name for f in dataclasses.fields(klass)}
        if not isinstance(cfg[name], dict) or not set(cfg[name]) & known:
            return False
    meta_path = folder / META
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(meta, dict):
            return False
        legacy = {"target_names", "data_fingerprint", "backbone", "epochs_completed"} <= set(meta)
        if meta.get("format") != RUN_FORMAT and not ("format" not in meta and legacy):
            return False
    return True


def _unswappable(out: Path) -> str | None:
    """Why ``out`` cannot be replaced by renaming a sibling onto it (None when it can)."""
    if out.name in ("", ".", ".."):
        return "it is '.' or '..'"
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        return "it is the current folder or holds it"
    if target.exists() and os.path.ismount(target):
        return "it is a mount point"
    parent = out.parent if out.parent != Path("") else Path(".")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        return f"its parent folder {parent} is not writable"
    return None


def check_replaceable(out: Path, overwrite: bool, data_path: str | Path | None = None) -> None:
    """Refuse (before anything is written) a ``--out`` that must not be replaced.

    Refused: a file; a folder that cannot be swapped with a sibling (``.``, ``..``, the
    current folder or one holding it, a mount point, a folder whose parent is read-only); the
    data being trained on or a folder containing it; a non-empty folder without
    ``overwrite``; with ``overwrite``, a folder that is not an sfnet run folder by content
    (:func:`is_run_folder`), that holds data (:data:`DATA_MARKERS`, ``*.npz``) or that holds
    anything sfnet does not write there (:data:`RUN_ENTRIES` and an interrupted write's
    temporary file; inside ``figures/`` and ``explain/``, :func:`_foreign_inside`): the user's files are never deleted with the old run.

    Raises:
        RunFolderError: naming the folder and what to do.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out}: is a file, not a run folder; choose another --out")
    why = _unswappable(out)
    if why:
        raise RunFolderError(
            f"{out}: cannot be a run folder ({why}); a new run is trained beside it and swapped "
            "in - give --out a named subfolder such as runs/NAME"
        )
    if data_path:
        data = Path(data_path).resolve()
        target = out.resolve()
        if data == target or target in data.parents:
            raise RunFolderError(
                f"{out}: holds the data being trained on ({data_path}); choose another --out"
            )
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise RunFolderError(
            f"{out}: run folder exists and is not empty; use --overwrite to replace it or "
            "--resume to continue it"
        )
    names = {p.name for p in out.iterdir()}
    data_like = sorted(n for n in names if n in DATA_MARKERS or n.endswith(".npz"))
    data_like = [n for n in data_like if n not in (ACTIVATIONS, RUN_DATA)]
    if data_like or not is_run_folder(out):
        why = (
            f"it holds {', '.join(data_like)}"
            if data_like
            else f"no {CONFIG} with sfnet's [data], [model] and [train] tables and no sfnet {META}"
        )
        raise RunFolderError(
            f"{out}: not an sfnet run folder ({why}); --overwrite only replaces run folders - "
            "choose another --out or remove it yourself"
        )
    foreign = foreign_entries(out, RUN_ENTRIES) + _foreign_inside(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise RunFolderError(
            f"{out}: holds {shown}, which sfnet did not write; --overwrite would delete it with "
            "the old run - move it out of the run folder (or remove it yourself) and run again"
        )


def is_explanation(path: Path) -> bool:
    """True when ``path`` (``OBJID.json``) is an explanation ``sfnet explain`` wrote: a regular
    file (not a link) holding a JSON object with :data:`EXPLANATION_KEYS`."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and record.keys() >= EXPLANATION_KEYS


def _foreign_inside(out: Path) -> list[str]:
    """Entries of ``out/figures`` and ``out/explain`` that sfnet does not write there, as
    ``SUBFOLDER/NAME``: in ``figures/`` any name but :data:`_FIGURE_FILE`'s, in ``explain/``
    any ``OBJID.png`` / ``OBJID.json`` whose ``OBJID.json`` is not :func:`is_explanation`
    (a killed write's temporary file of either counts as sfnet's); folders and links are never
    sfnet's."""
    foreign = []
    for sub in (FIGURES, EXPLAIN):
        folder = out / sub
        if folder.is_symlink() or not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            name = atomic_write_target(p.name) or p.name
            stem, suffix = os.path.splitext(name)
            if sub == FIGURES:
                ours = _FIGURE_FILE.fullmatch(name) is not None
            else:
                ours = suffix in (".png", ".json") and (
                    name != p.name or is_explanation(folder / f"{stem}.json")
                )
            if not ours or p.is_symlink() or not p.is_file():
                foreign.append(f"{sub}/{p.name}")
    return foreign


def stage_run_dir(out: Path, overwrite: bool, data_path: str | Path | None = None) -> StagedRun:
    """Check ``out`` (:func:`check_replaceable`) and create an empty staging folder beside it.

    The caller holds ``out``'s lock (:func:`sfnet.lock.folder_lock`), so leftovers of killed
    earlier attempts (``.NAME.staging``, ``.NAME.old``) are removed here.
    """
    out = Path(out)
    check_replaceable(out, overwrite, data_path)
    staged = StagedRun(out, staging_path(out))
    for leftover in (staged.path, _sibling(out, _OLD)):
        remove_tree(leftover)
    staged.path.mkdir(parents=True)
    return staged


def _sibling(out: Path, kind: str) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.{kind}"
