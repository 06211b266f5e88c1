"""Training from Python: :func:`train_run` (the Python face of ``sfnet train``).

The same recipe and files as ``sfnet train`` (:func:`sfnet.train.fit`); returns the loaded
:class:`~sfnet.runs.Run` (through :func:`sfnet.runs.load_run`, the one loading path).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sfnet import runs
from sfnet.config import ConfigError, RunConfig
from sfnet.data.dataset import GalaxyData
from sfnet.data.galaxies import DEFAULT_CROP, native_size
from sfnet.errors import DataError, UserError


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


def _interactive() -> bool:
    """True in a Jupyter/IPython session or when stderr is a terminal (progress shown)."""
    if "ipykernel" in sys.modules or "IPython" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _epoch_reporter(
    enabled: bool, epochs: int, on_epoch: Callable[[dict[str, Any]], None] | None
) -> tuple[Callable[[dict[str, Any]], None], Any]:
    """An ``on_epoch`` callback that advances an epoch bar showing the validation RMSE (and
    calls the user's callback), and the bar (to close)."""
    from sfnet.progress import progress_bar

    bar = progress_bar(enabled, epochs, "training", unit="epoch", leave=True)

    def report(record: dict[str, Any]) -> None:
        val = ", ".join(f"{k}={v:.4g}" for k, v in record.get("val_rmse", {}).items())
        bar.set_postfix_str(f"val RMSE {val}, train loss {record.get('train_loss', 0):.3g}")
        bar.update(1)
        if on_epoch is not None:
            on_epoch(record)

    return report, bar


def train_run(
    data: str | Path | GalaxyData,
    target: str = "metallicity",
    k: int | None = 4,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> runs.Run:
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
        progress: show progress: an epoch bar whose label gives each epoch's validation RMSE
            (physical units) and train loss, and a bar per epoch over its batches
            (``tqdm.auto``: a widget in Jupyter where ipywidgets is installed, text
            otherwise). None (default): on in Jupyter/IPython and on a terminal.
        on_epoch: called after every epoch with its record, the dict ``metrics.jsonl`` stores:
            ``epoch`` (1-based), ``train_loss`` (RMSE of standardized targets), ``val_rmse``
            (target -> validation RMSE in physical units, dex), ``dead_features``, ``lr``,
            ``seconds``.
        **options: any field of :class:`~sfnet.config.DataConfig`,
            :class:`~sfnet.config.ModelConfig` or :class:`~sfnet.config.TrainConfig` (the CLI
            options): ``epochs``, ``batch_size``, ``lr``, ``schedule``, ``seed``,
            ``split_seed``, ``val_fraction``, ``crop`` (px), ``resize`` (px), ``pretrained``,
            ``device``, ``amp``, ``channels_last``, ``num_workers`` (alias ``workers``), ...

    Returns:
        The trained :class:`~sfnet.runs.Run`.

    Example:
        >>> history = []
        >>> run = sfnet.train_run("survey", target="metallicity", k=4, out="runs/z", epochs=5,
        ...                       on_epoch=history.append)
        >>> history[-1]["val_rmse"]
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
            data = source.path
        else:
            if not np.isfinite(np.asarray(data.y)).all():
                raise DataError("train_run(): the galaxies have no (finite) targets to learn")
            in_memory = data
            cfg.data.crop = int(data.images.shape[-1])
    if not isinstance(data, GalaxyData):
        cfg.data.path = str(data)
        cfg.data.crop = min(DEFAULT_CROP, native_size(Path(data), options.get("resize")))
    cfg = _config_from_options(cfg, options)
    show = _interactive() if progress is None else bool(progress)
    report, bar = _epoch_reporter(show, cfg.train.epochs, on_epoch)
    kept = in_memory is not None and getattr(in_memory, "config", None) is None
    temp = out.parent / f".{out.name}.{runs.RUN_DATA}"
    try:
        if kept:  # written beside the run while it trains, then moved into it
            cfg.data.path = str(_save_in_memory(in_memory, temp))
        fit(cfg, out, overwrite=overwrite, progress=show, data=in_memory, on_epoch=report)
        if kept:
            _move_data_into_run(temp, out)
    finally:
        bar.close()
        temp.unlink(missing_ok=True)  # a failed start leaves nothing behind
    return runs.load_run(out)


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
