"""The Sparse Feature Network: encoder trunk -> ReLU -> TopK(k of d) -> Linear head.

The trunk is torchvision's resnet18 (``backbone="resnet18"``, d = 512, the paper's) or any timm
encoder: a timm model name (``resnet50``, ``convnext_nano``, ...) or a Hugging Face hub
identifier (``hf_hub:mwalmsley/zoobot-encoder-resnet18``, Zoobot's galaxy-pretrained encoders).
For a timm trunk the pooled features are the pixel mean of the ReLU of the encoder's last
feature map (``forward_features``), so d = its ``num_features`` (2048 for resnet50) and the
spatial maps average exactly to the pooled features; for encoders whose last block ends in a
ReLU (ResNets) this is the encoder's own pooled embedding.

Weights are never unpickled: hub weights are read from ``model.safetensors`` only, torchvision's
ImageNet file is hash-checked and read with ``torch.load(weights_only=True)``.

``SparseFeatureNet(k=None)`` is the dense baseline: the same network without the TopK layer.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from sfnet.data.batches import IMAGENET_MEAN, IMAGENET_STD
from sfnet.errors import UserError

log = logging.getLogger(__name__)

#: Pooled feature width of the torchvision backbones (timm encoders: their ``num_features``).
BACKBONE_DIMS = {"resnet18": 512}
#: The torchvision trunks (every other backbone name is a timm encoder).
TORCHVISION_BACKBONES = ("resnet18",)
#: Prefix of a Hugging Face hub encoder, as timm spells it.
HF_HUB_PREFIX = "hf_hub:"
#: ``pretrained`` value meaning "the encoder's published weights, through the hub cache".
HUB = "hub"
#: torchvision's ImageNet resnet18 weights; the hex after the dash is their sha256 prefix.
RESNET18_IMAGENET_URL = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
#: Zoobot's galaxy-pretrained resnet18 encoder (Walmsley et al.), used by ``--features zoobot``.
ZOOBOT_ENCODER = "hf_hub:mwalmsley/zoobot-encoder-resnet18"


class PretrainedWeightsError(UserError):
    """Pretrained weights could not be loaded; the message says where to put them."""


class BackboneError(UserError, ValueError):
    """The backbone name is not a known torchvision trunk, timm model or hub identifier."""


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read at call time: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``,
    else ``~/.cache/huggingface/hub`` (where ``hf download`` puts files)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return Path(home).expanduser() / "hub"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_placement(repo: str, files: str) -> str:
    folder = hub_cache_dir() / f"models--{repo.replace('/', '--')}"
    return (
        f"on a machine with internet run `hf download {repo} {files}` and copy its "
        f"{folder.name} folder to {folder} (layout: snapshots/REVISION/{{{files.replace(' ', ',')}}} "
        "and refs/main holding REVISION), or set HF_HUB_CACHE to a cache that has it"
    )


def hub_file(repo: str, filename: str) -> Path:
    """A file of a hub repository from the local cache, downloading it only when absent.

    The cache is tried first (no network at all once the files are there); ``HF_HUB_OFFLINE=1``
    forbids the download. Raises :class:`PretrainedWeightsError` in one line naming the cache.
    """
    from huggingface_hub import hf_hub_download

    cache = hub_cache_dir()
    try:
        return Path(hf_hub_download(repo, filename, cache_dir=cache, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: download below
        pass
    why = "HF_HUB_OFFLINE is set"
    if not _offline():
        hub_log = logging.getLogger("huggingface_hub")
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)  # its retry warnings would bury the one line below
        try:
            return Path(hf_hub_download(repo, filename, cache_dir=cache))
        except Exception as e:  # noqa: BLE001 - no network, unknown repo, missing file
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            why = f"{type(e).__name__}: {first.split('. ')[0][:120]}"
        finally:
            hub_log.setLevel(level)
    files = "config.json model.safetensors"
    raise PretrainedWeightsError(
        f"{repo}/{filename} is not in the hub cache {cache} and could not be downloaded "
        f"({why}); {_hub_placement(repo, files)}"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class EncoderSpec:
    """What rebuilds a timm trunk without network, as recorded in ``model.json`` (``encoder``).

    Attributes:
        backbone: the name as the user gave it (``convnext_nano``, ``hf_hub:ORG/NAME``).
        architecture: the timm model name that builds it; model_args: its extra arguments.
        num_features: d, the pooled feature width. in_chans: channels the encoder expects
            (1: greyscale, fed the mean of the g, r, i channels).
        mean, std: the encoder's pretrained_cfg normalisation, per input channel, images in [0, 1].
        input_size: (C, H, W) the encoder was pretrained at.
        weights: identity of the pretrained weights (``repo``, ``revision``, ``file``,
            ``sha256``; or ``path``, ``sha256`` for a local file); None for random init.
    """

    backbone: str
    architecture: str
    model_args: dict = field(default_factory=dict)
    num_features: int = 0
    in_chans: int = 3
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    input_size: list[int] = field(default_factory=lambda: [3, 224, 224])
    weights: dict | None = None
    weights_path: str | None = field(default=None, repr=False)  # local file; not recorded

    def record(self) -> dict[str, Any]:
        """The JSON-able record for ``model.json`` (no local paths of the cache)."""
        d = asdict(self)
        d.pop("weights_path")
        return d

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> EncoderSpec:
        known = {f for f in cls.__dataclass_fields__ if f != "weights_path"}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) for the 3 gri channels: a greyscale encoder's single value is repeated
        (the trunk averages the normalised channels, i.e. normalises the mean of g, r, i)."""
        mean, std = list(self.mean), list(self.std)
        if len(mean) == 1:
            mean, std = mean * 3, std * 3
        return tuple(mean[:3]), tuple(std[:3])


def is_timm_backbone(backbone: str) -> bool:
    return backbone not in TORCHVISION_BACKBONES


def check_backbone_name(backbone: str) -> None:
    """Raise :class:`BackboneError` unless ``backbone`` is resnet18, a timm model or hf_hub:ORG/NAME."""
    if not isinstance(backbone, str) or not backbone:
        raise BackboneError(f"backbone must be a non-empty name, got {backbone!r}")
    if backbone in TORCHVISION_BACKBONES:
        return
    if backbone.startswith(HF_HUB_PREFIX):
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", backbone[len(HF_HUB_PREFIX) :]):
            raise BackboneError(f"backbone {backbone!r}: expected hf_hub:ORG/NAME")
        return
    import timm

    if not timm.is_model(backbone.split(".")[0]):
        raise BackboneError(
            f"backbone {backbone!r} is neither torchvision's resnet18, a timm model name "
            "(see timm.list_models()) nor a hub identifier hf_hub:ORG/NAME"
        )


def _hub_config(repo: str) -> tuple[str, dict, dict]:
    """(architecture, model_args, pretrained_cfg) of a timm hub repo's config.json."""
    path = hub_file(repo, "config.json")
    try:
        cfg = json.loads(path.read_text())
        if "pretrained_cfg" in cfg:  # timm >= 0.9 layout
            arch, pretrained_cfg = cfg["architecture"], dict(cfg["pretrained_cfg"])
            model_args = dict(cfg.get("model_args") or {})
        else:  # legacy single dict
            pretrained_cfg = dict(cfg)
            arch, model_args = pretrained_cfg.pop("architecture"), {}
        if not isinstance(arch, str):
            raise TypeError(f"architecture is {arch!r}")
    except Exception as e:  # noqa: BLE001
        raise PretrainedWeightsError(f"{path}: not a timm config.json ({e})") from None
    drop = ("num_classes", "pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "global_pool")
    return arch, {k: v for k, v in model_args.items() if k not in drop}, dict(pretrained_cfg)


@functools.lru_cache(maxsize=16)
def _resolve(backbone: str, pretrained: str | None, cache: str) -> EncoderSpec:
    import timm

    check_backbone_name(backbone)
    if backbone.startswith(HF_HUB_PREFIX):
        repo = backbone[len(HF_HUB_PREFIX) :]
        arch, model_args, pcfg = _hub_config(repo)
    else:
        arch, model_args = backbone, {}
        found = timm.models.get_pretrained_cfg(backbone)
        pcfg = found.to_dict() if found is not None else {}
        repo = pcfg.get("hf_hub_id")
    with torch.device("meta"):
        enc = timm.create_model(arch, pretrained=False, num_classes=0, **model_args)
    in_chans = int(model_args.get("in_chans", (pcfg.get("input_size") or (3,))[0]))
    spec = EncoderSpec(
        backbone=backbone,
        architecture=arch,
        model_args=model_args,
        num_features=int(enc.num_features),
        in_chans=in_chans,
        mean=[float(v) for v in pcfg.get("mean", IMAGENET_MEAN)],
        std=[float(v) for v in pcfg.get("std", IMAGENET_STD)],
        input_size=[int(v) for v in pcfg.get("input_size", (in_chans, 224, 224))],
    )
    if pretrained is None:
        return spec
    if pretrained == HUB:
        if not repo:
            raise PretrainedWeightsError(
                f"backbone {backbone!r} has no published weights on the hub (pretrained_cfg has no "
                "hf_hub_id); pass a .safetensors path or train from scratch"
            )
        path = hub_file(repo, "model.safetensors")
        spec.weights = {
            "repo": repo,
            "revision": path.parent.name,
            "file": path.name,
            "sha256": _sha256(path),
        }
    elif pretrained == "imagenet":
        raise PretrainedWeightsError(
            f"pretrained 'imagenet' is torchvision's resnet18 file; for {backbone} use 'hub' "
            "(its published weights) or a .safetensors path"
        )
    else:
        path = Path(pretrained).expanduser()
        if path.suffix != ".safetensors":
            raise PretrainedWeightsError(
                f"{path}: timm trunks load safetensors only (never pickled .bin/.pth weights); "
                "convert it with safetensors.torch.save_file on a trusted machine"
            )
        if not path.is_file():
            raise PretrainedWeightsError(f"{path}: pretrained weights file not found")
        spec.weights = {"path": str(path.resolve()), "sha256": _sha256(path)}
    spec.weights_path = str(path)
    return spec


def encoder_spec(backbone: str, pretrained: str | None = None) -> EncoderSpec | None:
    """The timm encoder behind ``backbone`` (None for torchvision's resnet18).

    Reads the hub config (and, when ``pretrained`` is ``"hub"``, the weights) from the hub cache,
    downloading them once where there is a network. Pure: results are cached per cache folder.
    """
    if not is_timm_backbone(backbone):
        check_backbone_name(backbone)
        return None
    return _resolve(backbone, pretrained, str(hub_cache_dir()))


def backbone_dim(backbone: str, pretrained: str | None = None) -> int:
    """d, the pooled feature width of ``backbone`` (512 for resnet18)."""
    spec = encoder_spec(backbone, pretrained)
    return BACKBONE_DIMS[backbone] if spec is None else spec.num_features


def pretrained_normalization(
    backbone: str, pretrained: str | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per gri channel that pretrained weights expect (ImageNet's for resnet18,
    the encoder's pretrained_cfg for timm trunks)."""
    spec = encoder_spec(backbone, pretrained)
    return (IMAGENET_MEAN, IMAGENET_STD) if spec is None else spec.normalization


def encoder_record(backbone: str, pretrained: str | None) -> dict | None:
    """What ``model.json`` records of the trunk (None for torchvision's resnet18)."""
    spec = encoder_spec(backbone, pretrained)
    return None if spec is None else spec.record()


class TopK(nn.Module):
    """Keep the k largest entries of each row, zero the rest.

    Gradients flow only through the kept entries. Input and output are (N, d). Apply it after a
    ReLU: a kept entry whose value is 0 (fewer than k positive values) is *not* an active feature.

    Example:
        >>> TopK(2)(torch.tensor([[0.1, 3.0, 0.0, 2.0]]))
        tensor([[0., 3., 0., 2.]])
    """

    def __init__(self, k: int, d: int | None = None) -> None:
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise ValueError(f"TopK: k must be a positive integer, got {k!r}")
        if d is not None and k >= d:
            raise ValueError(f"TopK: k ({k}) must be smaller than the feature width d ({d})")
        self.k = k
        self.d = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.select(x)[0]

    def select(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (sparse (N, d), kept values (N, k), kept indices (N, k) int64)."""
        if x.ndim != 2:
            raise ValueError(f"TopK expects (N, d) input, got shape {tuple(x.shape)}")
        if self.k >= x.shape[1]:
            raise ValueError(f"TopK: k ({self.k}) must be smaller than d ({x.shape[1]})")
        values, indices = torch.topk(x, self.k, dim=1, sorted=True)
        sparse = torch.zeros_like(x).scatter(1, indices, values)
        return sparse, values, indices

    def extra_repr(self) -> str:
        return f"k={self.k}"


@dataclass
class SFNetOutput:
    """Result of a forward pass.

    Attributes:
        predictions: (N, T) in standardized target units.
        sparse: (N, d) the features fed to the head: the TopK-sparse features (the dense
            post-ReLU pooled features for the dense baseline, k = None).
        indices: (N, k) int64 indices kept by TopK (sorted by value, descending), None for dense.
        values: (N, k) kept values (0 where fewer than k features are positive), None for dense.
        pooled: (N, d) pooled features after the ReLU, before TopK (:meth:`SparseFeatureNet.pooled`
            of the same pass; ``sparse`` itself for the dense baseline).
    """

    predictions: torch.Tensor
    sparse: torch.Tensor
    indices: torch.Tensor | None = None
    values: torch.Tensor | None = None
    pooled: torch.Tensor | None = None


class Fp32AvgPool(nn.AdaptiveAvgPool2d):
    """Global average pooling computed in fp32 whatever the input dtype.

    Under bf16 autocast the trunk's last feature map is bf16 (8-bit mantissa); pooling it in
    fp32 gives the pooled features, and so TopK's selection, fp32 resolution (fewer exact ties).
    """

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float())


def _resnet18_trunk(pretrained: str | None) -> nn.Module:
    net = torchvision.models.resnet18(weights=None)
    if pretrained is not None:
        net.load_state_dict(_load_pretrained_state(pretrained), strict=True)
    net.avgpool = Fp32AvgPool()
    net.fc = nn.Identity()
    return net


class TimmTrunk(nn.Module):
    """A timm encoder as an SFNet trunk: (N, 3, H, W) -> (N, d) pooled features.

    ``maps`` is the ReLU of the encoder's last feature map (``forward_features``); the pooled
    features are its pixel mean in fp32, so they average the maps exactly. A greyscale encoder
    (``in_chans == 1``) sees the mean of the three normalised g, r, i channels.
    """

    def __init__(self, spec: EncoderSpec, load_weights: bool) -> None:
        super().__init__()
        import timm

        self.in_chans = spec.in_chans
        self.architecture = spec.architecture
        kwargs = dict(spec.model_args)
        kwargs.setdefault("in_chans", spec.in_chans)
        if load_weights and spec.weights_path:
            kwargs["pretrained_cfg_overlay"] = {
                "file": spec.weights_path,  # a .safetensors file: timm reads it with safetensors
                "source": "file",
                "hf_hub_id": None,
                "url": None,
            }
            try:
                self.encoder = timm.create_model(
                    spec.architecture, pretrained=True, num_classes=0, **kwargs
                )
            except Exception as e:  # noqa: BLE001 - wrong architecture or corrupt file
                raise PretrainedWeightsError(
                    f"{spec.weights_path}: cannot load into {spec.architecture} "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                ) from None
        else:
            self.encoder = timm.create_model(
                spec.architecture, pretrained=False, num_classes=0, **kwargs
            )
        self.pool = Fp32AvgPool()

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d, h, w) ReLU of the encoder's last feature map."""
        if self.in_chans == 1 and x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        try:
            return torch.relu(self.encoder.forward_features(x))
        except RuntimeError as e:
            if "input size" not in str(e) and "Output size is too small" not in str(e):
                raise
            raise BackboneError(
                f"{self.architecture}: {x.shape[-1]} px images are too small for this encoder "
                "(a layer would see less than its kernel); use a larger --crop or --resize "
                "(ConvNeXt needs at least 32 px)"
            ) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.maps(x)).flatten(1)


def _imagenet_resnet18_state() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet resnet18 weights, checked and read without unpickling code.

    The file (``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``) is downloaded where absent,
    its sha256 must start with the prefix torchvision publishes in the file name (as
    ``torch.hub``'s ``check_hash`` does), and it is read with ``torch.load(weights_only=True)``.
    """
    url = RESNET18_IMAGENET_URL
    filename = os.path.basename(url)
    where = Path(torch.hub.get_dir()) / "checkpoints" / filename
    prefix = re.search(torch.hub.HASH_REGEX, filename).group(1)
    how = (
        f"download {url} and put it at {where} (or set TORCH_HOME), "
        "or pass pretrained=PATH to a torchvision-format state dict, or train from scratch "
        "(pretrained=None)"
    )
    if not where.is_file():
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(where), prefix, progress=False)
        except Exception as e:  # noqa: BLE001 - network, hash or file errors all end here
            raise PretrainedWeightsError(
                f"could not download the ImageNet resnet18 weights "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); {how}"
            ) from None
    digest = _sha256(where)
    if not digest.startswith(prefix):
        raise PretrainedWeightsError(
            f"{where}: sha256 {digest[:12]}... does not start with torchvision's published "
            f"{prefix}: refused (a corrupt or foreign file); delete it, then {how}"
        )
    return _read_state_dict(where)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a ``torch.load(weights_only=True)`` file (no code runs)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - includes pickles that would run code
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise PretrainedWeightsError(
            f"{path}: refused, not a plain tensor state dict ({type(e).__name__}: {first[:200]})"
        ) from None
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _load_pretrained_state(pretrained: str) -> dict[str, torch.Tensor]:
    if pretrained == "imagenet":
        return _imagenet_resnet18_state()
    path = Path(pretrained)
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: pretrained weights file not found")
    state = _read_state_dict(path)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    missing = sorted(set(reference) - set(state))
    if missing:
        raise PretrainedWeightsError(
            f"{path}: not a torchvision resnet18 state dict (missing {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''})"
        )
    return {k: v for k, v in state.items() if k in reference}


class SparseFeatureNet(nn.Module):
    """Encoder trunk -> ReLU -> TopK(k) -> Linear(d, n_targets).

    Args:
        k: active features per image; None builds the dense baseline (no TopK).
        n_targets: number of regression targets T.
        backbone: ``resnet18`` (torchvision, d = 512), a timm model name or ``hf_hub:ORG/NAME``
            (d = the encoder's ``num_features``; see :func:`encoder_spec`).
        pretrained: None (random init); for resnet18 ``"imagenet"`` (torchvision's weights,
            hash-checked, torch hub cache) or a path to a torchvision-format state dict
            (``.safetensors``, or ``.pth``/``.pt`` read with ``weights_only=True``); for timm
            trunks ``"hub"`` (the encoder's published ``model.safetensors`` through the hub
            cache) or a path to a ``.safetensors`` file.
        encoder: a recorded :meth:`EncoderSpec.record` (from ``model.json``): rebuilds the timm
            trunk's architecture without any network or cache (weights come from the run).

    Input: (N, 3, H, W) float32 normalized images (H, W >= 32). ``forward`` returns an
    :class:`SFNetOutput`: ``predictions`` (N, n_targets) standardized targets, and for sparse
    nets the kept ``indices`` / ``values`` (N, k).

    Example:
        >>> net = SparseFeatureNet(k=4, n_targets=1)
        >>> out = net(torch.randn(2, 3, 64, 64))
        >>> out.predictions.shape, out.indices.shape
        (torch.Size([2, 1]), torch.Size([2, 4]))
    """

    def __init__(
        self,
        k: int | None,
        n_targets: int,
        backbone: str = "resnet18",
        pretrained: str | None = None,
        encoder: dict | None = None,
    ) -> None:
        super().__init__()
        if n_targets <= 0:
            raise ValueError(f"n_targets must be positive, got {n_targets}")
        self.k = k
        self.backbone_name = backbone
        if encoder is not None:
            self.encoder_spec: EncoderSpec | None = EncoderSpec.from_record(encoder)
        else:
            self.encoder_spec = encoder_spec(backbone, pretrained)
        if self.encoder_spec is None:
            self.d = BACKBONE_DIMS[backbone]
            self.trunk: nn.Module = _resnet18_trunk(pretrained)
        else:
            self.d = self.encoder_spec.num_features
            if self.encoder_spec.in_chans == 1:
                log.info(
                    "%s expects 1 channel: it sees the mean of the normalised g, r, i channels",
                    backbone,
                )
            self.trunk = TimmTrunk(self.encoder_spec, load_weights=encoder is None)
        if k is not None and k >= self.d:
            raise BackboneError(
                f"model.k ({k}) must be smaller than {backbone}'s feature width d = {self.d}"
            )
        self.relu = nn.ReLU()
        self.topk = TopK(k, self.d) if k is not None else None
        self.head = nn.Linear(self.d, n_targets)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) pooled (dense) features after the ReLU, before TopK."""
        return self.relu(self.trunk(x))

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d, h, w) spatial maps of the last convolutional block, before average pooling.

        For resnet18 this is the (post-ReLU) output of ``layer4``: h = w = ceil(H / 32), e.g.
        5x5 for 144 px and 2x2 for 64 px; for a timm trunk the ReLU of its ``forward_features``.
        The ReLU is applied again (a no-op on these non-negative maps) so that the pixel mean
        of each map equals :meth:`pooled` exactly.
        """
        t = self.trunk
        if isinstance(t, TimmTrunk):
            return self.relu(t.maps(x))
        x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
        x = t.layer4(t.layer3(t.layer2(t.layer1(x))))
        return self.relu(x)

    def sparse(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) features after TopK (dense post-ReLU pooled features for the dense baseline)."""
        f = self.pooled(x)
        return f if self.topk is None else self.topk(f)

    def linear_head(self, f: torch.Tensor) -> torch.Tensor:
        """(N, T) = head(f), always in fp32 (also under autocast), so that predictions are
        exactly the linear function of the features that the equations analysis reads off."""
        with torch.autocast(device_type=f.device.type, enabled=False):
            return self.head(f.float())

    def forward(self, x: torch.Tensor) -> SFNetOutput:
        f = self.pooled(x)
        if self.topk is None:
            return SFNetOutput(predictions=self.linear_head(f), sparse=f, pooled=f)
        sparse, values, indices = self.topk.select(f)
        return SFNetOutput(self.linear_head(sparse), sparse, indices, values, pooled=f)
