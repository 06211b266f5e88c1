"""Typed configuration, one dataclass per concern, saved with each run as ``config.toml``.

Every number of the paper's recipe lives here and nowhere else; the CLI only overrides fields.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from sfnet.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TARGETS = ("metallicity", "bpt_lines")
SCHEDULES = ("flat_cos", "one_cycle")
#: How TOML (which has no null) spells an explicit None, e.g. ``k = "none"`` for the dense baseline.
NONE = "none"


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclass
class DataConfig:
    """Where the galaxies come from and how images are prepared.

    Attributes:
        data: dataset folder (catalog + images/) or a packed ``.npz`` array file.
        target: ``metallicity`` (oh_p50, dex) or ``bpt_lines`` (log10 of four line fluxes).
        crop: side of the centre crop in pixels (applied after ``resize``).
        resize: resize images to this side (pixels) before cropping; None keeps the stored size.
        val_fraction: share of galaxies held out for validation (seeded random split).
        split_seed: seed of the train/validation split.
    """

    data: str = ""
    target: str = "metallicity"
    crop: int = 144
    resize: int | None = None
    val_fraction: float = 0.2
    split_seed: int = 0

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"data.target must be one of {TARGETS}, got {self.target!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.crop <= 0:
            raise ConfigError(f"data.crop must be positive, got {self.crop}")
        if self.resize is not None and self.resize < self.crop:
            raise ConfigError(f"data.resize ({self.resize}) must be >= data.crop ({self.crop})")


@dataclass
class ModelConfig:
    """The network.

    Attributes:
        k: active features per galaxy (top-k of d); None is the dense baseline.
        backbone: torchvision trunk; only ``resnet18`` (d = 512) is supported.
        pretrained: None (random init), ``imagenet`` (torchvision weights API) or a path to a
            torchvision-format resnet18 state dict.
    """

    k: int | None = 4
    backbone: str = "resnet18"
    pretrained: str | None = None

    def validate(self) -> None:
        if self.backbone != "resnet18":
            raise ConfigError(f"model.backbone must be 'resnet18', got {self.backbone!r}")
        if self.k is not None and not 0 < self.k < 512:
            raise ConfigError(f"model.k must be in 1..511 (or None for dense), got {self.k}")


@dataclass
class TrainConfig:
    """The optimisation recipe (paper: Ranger, lr 0.1, flat+cosine, 20 epochs, batch 64).

    Attributes:
        epochs: passes over the training split.
        batch_size: galaxies per step.
        lr: peak learning rate.
        schedule: ``flat_cos`` (flat for ``flat_fraction`` of the steps, then cosine to ~0) or
            ``one_cycle`` (as in the paper's public code).
        flat_fraction: share of steps at the peak rate for ``flat_cos``.
        lookahead_k: Lookahead synchronisation period (steps).
        lookahead_alpha: Lookahead slow-weight step size.
        weight_decay: decoupled (AdamW-style) weight decay of RAdam.
        beta1, beta2: RAdam moment coefficients (fastai's Ranger: 0.95, 0.99).
        eps: RAdam epsilon.
        flips: random horizontal and vertical flips.
        seed: seed of weight init, shuffling and augmentation.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        amp: bf16 autocast: ``auto`` (on for CUDA, off for CPUs), true (on CPUs with native
            bf16: AVX512-BF16 or AMX), or false (fp32); see :mod:`sfnet.precision`.
        channels_last: channels-last memory format: ``auto`` (on for CUDA and vectorised CPUs),
            true or false.
        num_workers: background threads that read the next batches while the model trains.
        deterministic: use deterministic algorithms (exact resume on CPU).
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    schedule: str = "flat_cos"
    flat_fraction: float = 0.75
    lookahead_k: int = 6
    lookahead_alpha: float = 0.5
    weight_decay: float = 0.01
    beta1: float = 0.95
    beta2: float = 0.99
    eps: float = 1e-6
    flips: bool = True
    seed: int = 0
    device: str = "auto"
    amp: bool | str = field(
        default="auto",
        metadata={
            "help": "bf16 autocast: auto (CUDA only), true (also CPUs with native bf16), false"
        },
    )
    channels_last: bool | str = field(
        default="auto",
        metadata={"help": "channels-last memory format: auto (CUDA, AVX2+ CPUs), true, false"},
    )
    num_workers: int = 1
    deterministic: bool = True

    def validate(self) -> None:
        if self.epochs <= 0:
            raise ConfigError(f"train.epochs must be positive, got {self.epochs}")
        if self.batch_size <= 0:
            raise ConfigError(f"train.batch_size must be positive, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.flat_fraction <= 1.0:
            raise ConfigError(f"train.flat_fraction must be in [0, 1], got {self.flat_fraction}")
        if self.lookahead_k < 1 or not 0.0 < self.lookahead_alpha <= 1.0:
            raise ConfigError("train.lookahead_k must be >= 1 and train.lookahead_alpha in (0, 1]")
        for name in ("amp", "channels_last"):
            value = getattr(self, name)
            if value is None:  # the former spelling of auto
                setattr(self, name, "auto")
            elif not (isinstance(value, bool) or value == "auto"):
                raise ConfigError(f"train.{name} must be auto, true or false, got {value!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device must be auto, cpu or cuda, got {self.device!r}")


@dataclass
class RunConfig:
    """Everything needed to reproduce one training run; saved as ``config.toml``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        self.data.validate()
        self.model.validate()
        self.train.validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for TOML: a None whose default is None is omitted; a None that overrides
        a non-None default (``k = None``, the dense baseline) is written as the string "none"."""
        out: dict[str, Any] = {}
        for name in ("data", "model", "train"):
            section = getattr(self, name)
            values = {}
            for f in dataclasses.fields(section):
                v = getattr(section, f.name)
                if v is None:
                    if _default(f) is None:
                        continue
                    v = NONE
                values[f.name] = v
            out[name] = values
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> RunConfig:
        parts = {}
        for name, klass in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
            section = dict(d.get(name, {}))
            known = {f.name for f in dataclasses.fields(klass)}
            unknown = sorted(set(section) - known)
            if unknown:
                raise ConfigError(f"{source}: unknown field(s) in [{name}]: {', '.join(unknown)}")
            parts[name] = klass(**{k: None if v == NONE else v for k, v in section.items()})
        extra = sorted(set(d) - {"data", "model", "train"})
        if extra:
            raise ConfigError(f"{source}: unknown section(s): {', '.join(extra)}")
        cfg = cls(**parts)
        cfg.validate()
        return cfg

    def save(self, path: Path) -> None:
        """Write as TOML atomically."""
        save_toml(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_dict(load_toml(path), source=str(path))


def save_toml(path: Path, d: dict[str, Any]) -> None:
    """Write a dict as TOML, atomically."""
    from sfnet.io import atomic_write_bytes

    atomic_write_bytes(Path(path), tomli_w.dumps(d).encode())


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; a missing or malformed file is a :class:`ConfigError` naming it."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING
