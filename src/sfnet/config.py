"""Typed configuration, one dataclass per concern, saved with each run as ``config.toml``.

Every number of the paper's recipe lives here and nowhere else. Each field is declared once
with :func:`setting`: its default, its help text (units included) and its allowed range or
choices. The CLI options are generated from these fields (:mod:`sfnet.cli.options`), and
:meth:`validate` checks every value against its declared type and range, so adding a setting
is one edit in this file.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from sfnet.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The named target presets (the paper's); ``data.target`` also takes catalog columns.
TARGETS = ("metallicity", "bpt_lines")
SCHEDULES = ("flat_cos", "one_cycle")
DEVICES = ("auto", "cpu", "cuda")
#: Training recipes: ``stable`` (the default, issue 17's remedies on) and ``paper`` (as published).
RECIPES = ("stable", "paper")
#: Which weights are validated and saved: the optimizer's ``fast`` ones or Lookahead's ``slow`` ones.
EVAL_WEIGHTS = ("fast", "slow", "ema")
#: The remedies' defaults (the ``stable`` recipe) and their values under the ``paper`` recipe.
STABLE_REMEDIES = {
    "flat_fraction": 0.5,
    "bn_recompute": 2048,
    "warmup_epochs": 0.0,
    "eval_weights": "ema",
}
PAPER_REMEDIES = {
    "flat_fraction": 0.75,  # fastai's fit_flat_cos
    "bn_recompute": 0,
    "warmup_epochs": 0.0,
    "eval_weights": "fast",
}
#: The paper's initialisation (ImageNet weights), ``sfnet reproduce``'s default; ``train``'s is
#: random (``ModelConfig.pretrained`` = None), which needs no download.
PAPER_PRETRAINED = "imagenet"
#: torchvision trunks; any other backbone is a timm encoder (sfnet.model.encoder_spec).
BACKBONES = ("resnet18",)
#: How TOML (which has no null) spells an explicit None, e.g. ``k = "none"`` for the dense baseline.
NONE = "none"
#: Smallest crop: resnet18 halves the image five times; below 16 px its last stages see only
#: padding (the tests train at 16 px).
MIN_CROP = 16
#: Largest seed (seeds must fit every generator they feed, with room for per-run offsets).
MAX_SEED = 2**32 - 1
#: Galaxies per forward pass of inference (predict, analyze, explain): the default everywhere.
INFERENCE_BATCH = 256


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the field."""


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - argparse's word
    *,
    factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
    cli: bool = True,
) -> Any:
    """A config field with its help text and allowed values (all kept in ``field.metadata``).

    Args:
        default / factory: the default value (or a factory for mutable defaults).
        help: one line for ``--help``; say the unit and what None means.
        ge, gt, le, lt: inclusive/exclusive bounds of a number (each element of a tuple).
        choices: allowed strings.
        flag: CLI spelling when it differs from the field name (``num_workers`` -> ``workers``).
        cli: False keeps the field out of the generated CLI options.
    """
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    meta |= {"flag": flag, "cli": cli}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


_PLURAL = {bool: "booleans", int: "integers", float: "finite numbers", str: "strings"}
_TYPE_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a finite number",
    str: "a string",
    Path: "a path",
}


def _expected(hint: Any, meta: dict[str, Any]) -> str:
    """What a field accepts, in words: 'an integer >= 1 and <= 511, or 'none''."""
    base, optional = _unwrap_optional(hint)
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        words = " ".join(w for w in (f"a list of {_PLURAL[item]}", _range_words(meta)) if w)
    else:
        words = " ".join(w for w in (_TYPE_WORDS.get(base, str(base)), _range_words(meta)) if w)
    return f"{words}, or {NONE!r}" if optional else words


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def _range_words(meta: dict[str, Any]) -> str:
    if meta.get("choices"):
        return f"(one of {', '.join(meta['choices'])})"
    ops = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
    return " and ".join(f"{op} {meta[key]}" for key, op in ops if meta.get(key) is not None)


def check_value(key: str, value: Any, hint: Any, meta: dict[str, Any]) -> Any:
    """``value`` checked against its type ``hint`` and range ``meta``; returns it normalized
    (an int given for a float becomes a float, a list for a tuple a tuple).

    Raises:
        ConfigError: naming ``key`` and the expected type and range.
    """
    base, optional = _unwrap_optional(hint)
    expected = _expected(hint, meta)
    if value is None or (optional and value == NONE):
        if optional:
            return None
        raise ConfigError(f"{key} must be {expected}, got none")
    bad = ConfigError(f"{key} must be {expected}, got {value!r}")
    if typing.get_origin(base) is tuple:
        if not isinstance(value, list | tuple):
            raise bad
        item = typing.get_args(base)[0]
        try:
            return tuple(check_value(key, v, item, meta) for v in value)
        except ConfigError:
            raise bad from None
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if base is Path and isinstance(value, str):
        value = Path(value)
    if base in (int, float) and isinstance(value, bool) or not isinstance(value, base):
        raise bad
    if base is float and not math.isfinite(value):
        raise bad
    if meta.get("choices") and value not in meta["choices"]:
        raise bad
    bounds = {"ge": value.__ge__, "gt": value.__gt__, "le": value.__le__, "lt": value.__lt__}
    if any(meta.get(k) is not None and not ok(meta[k]) for k, ok in bounds.items()):
        raise bad
    return value


def check_fields(obj: Any, section: str, skip: tuple[str, ...] = ()) -> None:
    """Check (and normalize in place) every field of dataclass ``obj`` against its declared
    type and range (except ``skip``, checked by the caller); errors name ``section.field``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if f.name in skip or dataclasses.is_dataclass(hints[f.name]):
            continue
        value = check_value(f"{section}.{f.name}", getattr(obj, f.name), hints[f.name], f.metadata)
        setattr(obj, f.name, value)


def check_target(key: str, text: str) -> None:
    """Refuse a malformed target string (see :func:`sfnet.data.catalog.parse_target`).

    Raises:
        ConfigError: naming ``key`` and what is wrong.
    """
    from sfnet.data.catalog import parse_target
    from sfnet.errors import DataError

    try:
        parse_target(text)
    except DataError as e:
        raise ConfigError(
            f"{key} must be a preset ({', '.join(TARGETS)}) or catalog columns: {e}"
        ) from None


@dataclass
class DataConfig:
    """Where the galaxies come from and how images are prepared (see each field's help)."""

    path: str = setting(
        "", "dataset folder (catalog + images/) or packed .npz array file", flag="data"
    )
    target: str = setting(
        "metallicity",
        "a preset, metallicity (oh_p50, dex) or bpt_lines (log10 of four line fluxes), or "
        "catalog columns: 'COL, log10(COL) [unit]; COL > NUMBER' (comma-separated targets, "
        "optional log10 and unit, then ';'-separated quality cuts; see sfnet.data.catalog)",
    )
    crop: int = setting(144, "side of the centre crop in pixels (after resize)", ge=MIN_CROP)
    resize: int | None = setting(
        None,
        "resize images to this side in pixels before cropping (none: stored size)",
        ge=MIN_CROP,
    )
    val_fraction: float = setting(
        0.2, "share of galaxies held out for validation (seeded split)", gt=0.0, le=0.5
    )
    split_seed: int = setting(0, "seed of the train/validation split", ge=0, le=MAX_SEED)

    def validate(self) -> None:
        check_fields(self, "data")
        check_target("data.target", self.target)
        if self.resize is not None and self.resize < self.crop:
            raise ConfigError(f"data.resize ({self.resize}) must be >= data.crop ({self.crop})")

    def resolved(self) -> DataConfig:
        """A copy whose ``path`` is absolute (so a run resumes from any directory)."""
        if not self.path:
            return dataclasses.replace(self)
        return dataclasses.replace(self, path=str(Path(self.path).expanduser().resolve()))


@dataclass
class ModelConfig:
    """The network (see each field's help)."""

    k: int | None = setting(
        4,
        "active features per galaxy, top-k of d (512 for resnet18; none: the dense baseline)",
        ge=1,
    )
    backbone: str = setting(
        "resnet18",
        "trunk: resnet18 (torchvision, the paper's), a timm model name (resnet50, convnext_nano) "
        "or a hub encoder hf_hub:ORG/NAME (e.g. hf_hub:mwalmsley/zoobot-encoder-resnet18)",
    )
    pretrained: str | None = setting(
        None,
        "resnet18: 'imagenet' (torchvision weights, hash-checked; torch hub cache) or a path to a "
        "resnet18 state dict; timm/hub trunks: 'hub' (published model.safetensors via the "
        "Hugging Face cache) or a .safetensors path (none: random initialisation)",
    )

    def validate(self) -> None:
        check_fields(self, "model")
        if self.backbone in BACKBONES and self.k is not None and self.k >= 512:
            raise ConfigError(f"model.k ({self.k}) must be smaller than resnet18's d = 512")
        from sfnet.model import BackboneError, check_backbone_name

        try:
            check_backbone_name(self.backbone)
        except BackboneError as e:
            raise ConfigError(f"model.backbone: {e}") from None


@dataclass
class TrainConfig:
    """The optimisation recipe (paper: Ranger, lr 0.1, flat+cosine, 20 epochs, batch 64)."""

    epochs: int = setting(20, "passes over the training split", ge=1)
    batch_size: int = setting(
        64, "global batch (galaxies per step; batch norm needs at least 2)", ge=2
    )
    lr: float = setting(0.1, "peak learning rate", gt=0.0)
    schedule: str = setting(
        "flat_cos",
        "flat_cos (paper: flat for flat_fraction of the steps, then cosine to ~0) or one_cycle "
        "(the paper's public code)",
        choices=SCHEDULES,
    )
    flat_fraction: float = setting(
        STABLE_REMEDIES["flat_fraction"],
        "stable recipe: share of steps at the peak rate (flat_cos); the paper's is 0.75",
        ge=0,
        le=1,
    )
    lookahead_k: int = setting(6, "Lookahead synchronisation period (steps)", ge=1)
    lookahead_alpha: float = setting(0.5, "Lookahead slow-weight step size", gt=0, le=1)
    weight_decay: float = setting(0.01, "decoupled (AdamW-style) weight decay of RAdam", ge=0)
    beta1: float = setting(0.95, "RAdam first-moment coefficient (fastai's Ranger)", ge=0, lt=1)
    beta2: float = setting(0.99, "RAdam second-moment coefficient (fastai's Ranger)", ge=0, lt=1)
    eps: float = setting(1e-6, "RAdam epsilon", gt=0)
    recipe: str = setting(
        "stable",
        "stable (the paper's recipe plus the remedies below, which make seeds agree; see the "
        "README) or paper (exactly as published: the remedies below are ignored)",
        choices=RECIPES,
    )
    bn_recompute: int = setting(
        STABLE_REMEDIES["bn_recompute"],
        "stable recipe: recompute batch-norm statistics on this many training galaxies (a fixed "
        "seeded sample; all when fewer) before each validation and before saving; 0 = off",
        ge=0,
    )
    warmup_epochs: float = setting(
        STABLE_REMEDIES["warmup_epochs"],
        "stable recipe: linear learning-rate warm-up from ~0 over this many epochs (flat_cos)",
        ge=0,
    )
    eval_weights: str = setting(
        STABLE_REMEDIES["eval_weights"],
        "stable recipe: weights validated and saved: fast (the optimizer's), slow (Lookahead's) "
        "or ema (a moving average of the fast weights over the annealing phase, SWA-style)",
        choices=EVAL_WEIGHTS,
    )
    ema_epochs: float = setting(
        3.0,
        "eval_weights = ema: the average's horizon in epochs (per-step decay 1 - 1/(this x "
        "steps per epoch)); it starts where the learning rate starts to fall (flat_cos: after "
        "flat_fraction of the steps) and is a plain mean of its steps until the horizon",
        gt=0,
    )
    ema_start: float = setting(
        0.0,
        "eval_weights = ema: share of the annealing phase (from where the learning rate starts "
        "to fall to the last step) that passes before the average begins; 0 = at its start",
        ge=0,
        lt=1,
    )
    flips: bool = setting(True, "random horizontal and vertical flips")
    seed: int = setting(0, "seed of weight init, shuffling and flips", ge=0, le=MAX_SEED)
    device: str = setting("auto", "auto (CUDA when present), cpu or cuda", choices=DEVICES)
    amp: bool | None = setting(
        None,
        "bfloat16 autocast (unset = auto: on for CUDA, off on CPUs; true on a CPU that computes "
        "bf16 natively, AVX512-BF16 or AMX, is ~2x faster but spreads more across seeds; true "
        "on another CPU warns and runs fp32); false forces fp32 (see sfnet.precision)",
    )
    channels_last: bool | None = setting(
        None, "channels-last memory format (unset = auto: on for CUDA and AVX2/AVX512 CPUs)"
    )
    num_workers: int = setting(
        1, "background threads that read the next batches", ge=0, flag="workers"
    )
    deterministic: bool = setting(True, "deterministic algorithms (exact resume on CPU)")
    cuda_graphs: bool = setting(
        False,
        "CUDA only: the training step through torch.compile(mode=reduce-overhead), i.e. CUDA "
        "graphs against launch overhead at small batches; opt-in, unmeasured on this project's "
        "hardware (benchmarks/gpu_check.sh measures it); refused on a CPU",
    )

    def validate(self) -> None:
        check_fields(self, "train")

    def remedies(self) -> dict[str, Any]:
        """The remedies in force: the fields' values under the stable recipe, every one off
        (:data:`PAPER_REMEDIES`) under the paper's."""
        if self.recipe == "paper":
            return dict(PAPER_REMEDIES)
        return {k: getattr(self, k) for k in STABLE_REMEDIES}


#: The sections of a :class:`RunConfig`, in file order.
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
#: Keys renamed before 0.1.0 ((section, old) -> new): named in the error that refuses them.
RENAMED = {("data", "data"): "path"}


@dataclass
class PredictConfig:
    """Settings of ``sfnet predict`` (its options are generated from these fields; here, not in
    :mod:`sfnet.predict`, so that building the CLI does not import torch).

    Each field is a :func:`~sfnet.config.setting` (its help says what it is).
    """

    batch_size: int = setting(INFERENCE_BATCH, "galaxies per forward pass", ge=1)

    def validate(self) -> None:
        """Raises: ConfigError naming ``predict.FIELD`` outside its declared range."""
        check_fields(self, "predict")


@dataclass
class EmbedConfig:
    """``sfnet embed`` (see each field's help). Here, not in :mod:`sfnet.workflows.embed`, so
    that building the CLI does not import torch."""

    path: str = setting("", "dataset folder or .npz [default: a run's own data]", flag="data")
    crop: int | None = setting(
        None,
        "centre crop in pixels (none: a run's crop; 144 for a named encoder)",
        ge=MIN_CROP,
    )
    size: int | None = setting(
        None,
        "side in pixels the encoder sees, images resized (none: the encoder's pretrained input "
        "size; a run's trunk always sees its crop)",
        ge=MIN_CROP,
    )
    pretrained: str | None = setting(
        "hub",
        "weights of a named encoder: 'hub' (published safetensors via the Hugging Face cache), "
        "'imagenet' (resnet18), a weights file, or none (random: a sanity baseline)",
    )
    batch_size: int = setting(64, "galaxies per forward pass", ge=1)
    device: str = setting(
        "auto",
        "where the encoder runs (auto: CUDA when available)",
        choices=DEVICES,
    )

    def validate(self) -> None:
        check_fields(self, "embed")


@dataclass
class RunConfig:
    """Everything needed to reproduce one training run; saved as ``config.toml``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Check every field's type and range (raises :class:`ConfigError` naming the key)."""
        self.data.validate()
        self.model.validate()
        self.train.validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for TOML: a None whose default is None is omitted; a None that overrides
        a non-None default (``k = None``, the dense baseline) is written as the string "none"."""
        out: dict[str, Any] = {}
        for name in SECTIONS:
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
        """A validated config from a TOML-shaped dict; errors name ``source`` and the key."""
        extra = sorted(set(d) - set(SECTIONS))
        if extra:
            raise ConfigError(f"{source}: unknown section(s): {', '.join(extra)}")
        parts = {}
        for name, klass in SECTIONS.items():
            section = d.get(name, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{source}: [{name}] must be a table, got {section!r}")
            known = {f.name for f in dataclasses.fields(klass)}
            unknown = sorted(set(section) - known)
            for key in unknown:
                if (name, key) in RENAMED:
                    raise ConfigError(
                        f"{source}: [{name}] {key} is now [{name}] {RENAMED[name, key]} "
                        "(renamed in sfnet 0.1.0); rename the key in this file"
                    )
            if unknown:
                raise ConfigError(f"{source}: unknown field(s) in [{name}]: {', '.join(unknown)}")
            parts[name] = klass(**section)
        cfg = cls(**parts)
        try:
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        return cfg

    def save(self, path: Path) -> None:
        """Write as TOML atomically."""
        save_toml(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_dict(load_toml(path), source=str(path))


#: How a comparison launches its trainings (see :class:`CompareConfig`).
LAUNCHERS = ("inprocess", "torchrun")
#: Seed offset of the dense CNN (see :meth:`CompareConfig.run_config`).
DENSE_SEED_OFFSET = 1000
#: Values ``--quick`` gives to the comparison settings the user did not set.
QUICK = {"ks": (2, 4), "repeats": 1, "epochs": 2, "sae_steps": 100, "atlas": False, "dci_trees": 10}


@dataclass
class CompareConfig:
    """Settings of one comparison: its own fields below, and ``run``, the template of every
    training (a :class:`RunConfig`; each run sets its own ``data.target``, ``model.k`` and
    ``train.seed`` = template seed + repeat). Saved as ``compare.toml``: these fields at the
    top, then the template's ``[data]``, ``[model]`` and ``[train]`` sections.
    """

    targets: tuple[str, ...] = setting(
        TARGETS, "targets to compare: presets or catalog-column targets (as data.target)"
    )
    ks: tuple[int, ...] = setting(
        (2, 3, 4, 6, 8),
        "SFNet k values = numbers of principal components (quick: 2 4)",
        ge=1,
        le=511,
    )
    repeats: int = setting(
        3, "SFNet trainings per k from scratch, seeds seed..seed+R-1 (quick: 1)", ge=1
    )
    quick: bool = setting(
        False,
        "reduced comparison: ks 2 4, 1 repeat, 2 epochs, 100 SAE steps, no atlases (explicit "
        "options win)",
    )
    launcher: str = setting(
        "inprocess",
        "inprocess (sfnet.train.fit) or torchrun (one subprocess per run; set by --nproc)",
        choices=LAUNCHERS,
        cli=False,
    )
    nproc: int = setting(
        1,
        "train each run with torchrun --nproc_per_node N (DistributedDataParallel) instead "
        "of in this process",
        ge=1,
    )
    features: str | None = setting(
        None,
        "extra features to probe: .parquet (objID + columns, e.g. from 'sfnet embed'), .npz "
        "(objID, features) or structured .npy, keyed by objID; reproduce also takes 'zoobot' "
        "(computed from the cached hf_hub:mwalmsley/zoobot-encoder-resnet18)",
    )
    agn_top: int = setting(4, "most frequent SFNet features for the small AGN classifier", ge=1)
    probe_trees: int = setting(300, "boosting rounds of the XGBoost probes", ge=1)
    dci_trees: int = setting(
        50,
        "interpretability: trees of DCI's gradient-boosting regressor per factor (quick: 10)",
        ge=1,
    )
    sae_expansion: int = setting(
        4, "SAE-k baseline: dictionary size as a multiple of the feature dimension", ge=1
    )
    sae_steps: int = setting(600, "SAE-k baseline: Adam steps of each sparse autoencoder", ge=1)
    sae_features: str = setting(
        "dense",
        "SAE-k baseline trained on the dense CNN's pooled features or on the --features file",
        choices=("dense", "file"),
    )
    atlas: bool = setting(
        True,
        "write the HTML feature atlases of the analysed SFNet and of its SAE's latents, linked "
        "from atlas.html (their figures take ~10 s of CPU per target group and page)",
    )
    run: RunConfig = field(default_factory=RunConfig)

    # The template's settings that the comparison's steps read.
    path = property(lambda self: self.run.data.path, doc="dataset folder or .npz")
    epochs = property(lambda self: self.run.train.epochs, doc="epochs of every training")
    device = property(lambda self: self.run.train.device, doc="auto, cpu or cuda")
    seed = property(lambda self: self.run.train.seed, doc="seed of repeat 0")

    @classmethod
    def create(
        cls, quick: bool = False, run: RunConfig | None = None, **overrides: Any
    ) -> CompareConfig:
        """A validated config from explicit settings: the comparison's own fields, or any
        :class:`RunConfig` field by its name (``epochs``, ``crop``, ``path``, ...), set on the
        ``run`` template. With ``quick``, unset ks/repeats/epochs are reduced; ``None`` values
        mean "not set"."""
        run = copy.deepcopy(run) if run is not None else RunConfig()
        given = {k: v for k, v in overrides.items() if v is not None}
        if quick:
            for k, v in QUICK.items():
                given.setdefault(k, v)
        own = {f.name for f in dataclasses.fields(cls)} - {"run"}
        for name in [n for n in given if n not in own]:
            section = _run_section(name)
            if (section, name) in _PER_RUN.items():
                raise ConfigError(f"compare: {name} is set per run (by targets and ks)")
            if section is None:
                raise ConfigError(f"compare: unknown setting {name!r}")
            setattr(getattr(run, section), name, given.pop(name))
        run.data = run.data.resolved()  # absolute: the stored run configs compare equal
        cfg = cls(quick=quick, run=run, **given)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("compare: no data given (a dataset folder or .npz file)")
        check_fields(self, "compare")
        if not self.targets:
            raise ConfigError(f"compare: targets must be presets {TARGETS} or columns, got none")
        for t in self.targets:
            check_target("compare.targets", t)
        if len(set(self.ks)) != len(self.ks):
            raise ConfigError(f"compare: ks has duplicates: {list(self.ks)}")
        self.run_config(None, 0).validate()  # the template: crop, lr, epochs, ...

    def run_config(self, k: int | None, repeat: int, target: str | None = None) -> RunConfig:
        """The RunConfig of one training (k None = dense; repeat r uses seed + r).

        The dense CNN uses seed + DENSE_SEED_OFFSET, so it never shares its initial weights with
        an SFNet of the sweep (shared init would inflate the probes from dense to SFNet features).
        """
        if k is None:
            repeat = DENSE_SEED_OFFSET
        cfg = copy.deepcopy(self.run)
        cfg.data.target = target or self.targets[0]
        cfg.model.k = k
        cfg.train.seed = self.run.train.seed + repeat
        return cfg

    def to_dict(self) -> dict[str, Any]:
        """TOML layout: own fields, then the template's sections (without the per-run fields)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "run"}
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items() if v is not None}
        template = self.run.to_dict()
        for section, name in _PER_RUN.items():
            template[section].pop(name, None)
        return d | template

    def save(self, path: Path) -> None:
        save_toml(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> CompareConfig:
        """Read ``compare.toml`` (own fields, then ``[data]``, ``[model]``, ``[train]``).
        Errors name the file and the key."""
        path = Path(path)
        d = load_toml(path)
        flat = sorted(
            k for k in d if (k in SECTIONS and not isinstance(d[k], dict)) or _run_section(k)
        )
        if flat:
            raise ConfigError(
                f"{path}: {', '.join(flat)}: keys of an older sfnet; 0.1.0 keeps run settings "
                "in the [data] (the dataset is [data] path), [model] and [train] sections"
            )
        sections = {name: d.pop(name) for name in SECTIONS if name in d}
        for section, name in _PER_RUN.items():
            if name in sections.get(section, {}):
                raise ConfigError(
                    f"{path}: [{section}] {name} is set per run by the comparison; remove it"
                )
        run = RunConfig.from_dict(sections, source=str(path)) if sections else None
        quick = d.pop("quick", False)  # recorded for the reader: every value is in the file
        try:
            cfg = cls.create(run=run, **d)
            cfg.quick = quick
            cfg.validate()
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        return cfg


#: Template fields that each run of a comparison sets itself (section -> field).
_PER_RUN = {"data": "target", "model": "k"}


def _run_section(name: str) -> str | None:
    """The RunConfig section that has a field ``name`` (field names are unique across them)."""
    for section, klass in SECTIONS.items():
        if name in {f.name for f in dataclasses.fields(klass)}:
            return section
    return None


def save_toml(path: Path, d: dict[str, Any]) -> None:
    """Write a dict as TOML, atomically."""
    from sfnet.io import atomic_write_bytes

    atomic_write_bytes(Path(path), tomli_w.dumps(d).encode())


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; a missing, unreadable or malformed file is a :class:`ConfigError`."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING
