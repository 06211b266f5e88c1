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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tomllib

from sfnet import __version__
from sfnet.config import ConfigError, RunConfig
from sfnet.errors import RunFolderError
from sfnet.io import atomic_write, atomic_write_json, remove_tree, replace_dir

if TYPE_CHECKING:  # torch is imported where it is used: the file names above need no torch
    import torch

    from sfnet.data.batches import Normalization
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
#: In-memory galaxies a run was trained on (:func:`sfnet.api.train_run` keeps them with the run).
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
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RunFolderError(f"{path}: missing (is this a finished sfnet run?)") from None
        except json.JSONDecodeError as e:
            raise RunFolderError(f"{path}: not valid JSON ({e})") from None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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


@dataclass
class Run:
    """A trained run loaded from its folder.

    ``precision`` is what inference uses (:func:`sfnet.precision.choose_precision` for the device,
    honouring the run's ``amp`` / ``channels_last`` settings); the model is in its memory format.
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

    def load_data(self):
        """The run's galaxies (``config.data``), checked against the stored fingerprint."""
        from sfnet.data.dataset import load_dataset

        data = load_dataset(self.config.data)
        if data.target_names != self.meta.target_names:
            raise RunFolderError(
                f"{self.dir}: data targets {data.target_names} differ from the model's "
                f"{self.meta.target_names}"
            )
        return data

    def split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The run's (train_idx, val_idx) for a dataset of ``n`` galaxies."""
        from sfnet.data.batches import split_indices

        return split_indices(n, self.meta.val_fraction, self.meta.split_seed)

    def metrics(self) -> list[dict]:
        return read_metrics(self.dir / METRICS)


def load_run(run_dir: Path, device: str | torch.device = "cpu") -> Run:
    """Load a finished run (config, metadata, weights) in eval mode. Never unpickles."""
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
    from sfnet.precision import choose_precision

    precision = choose_precision(device, config.train.amp, config.train.channels_last)
    model = precision.model(model.to(device)).eval()
    return Run(run_dir, config, meta, model, precision)


# ------------------------------------------------------------------ replacing a run folder

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
    (:func:`is_run_folder`) or that holds data (:data:`DATA_MARKERS`, ``*.npz``).

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
