"""The Sparse Feature Network: resnet18 trunk -> ReLU -> TopK(k of d = 512) -> Linear head.

``SparseFeatureNet(k=None)`` is the dense baseline: the same network without the TopK layer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from sfnet.errors import UserError

#: Pooled feature width of each supported backbone.
BACKBONE_DIMS = {"resnet18": 512}


class PretrainedWeightsError(UserError):
    """ImageNet (or user-supplied) weights could not be loaded; the message says where to put them."""


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
    """

    predictions: torch.Tensor
    sparse: torch.Tensor
    indices: torch.Tensor | None = None
    values: torch.Tensor | None = None


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


def _load_pretrained_state(pretrained: str) -> dict[str, torch.Tensor]:
    if pretrained == "imagenet":
        weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
        filename = os.path.basename(weights.url)
        where = Path(torch.hub.get_dir()) / "checkpoints" / filename
        try:
            return weights.get_state_dict(progress=False)
        except Exception as e:  # noqa: BLE001 - network, hash or file errors all end here
            raise PretrainedWeightsError(
                f"could not load the ImageNet resnet18 weights ({type(e).__name__}: {e}). "
                f"Download {weights.url} and put it at {where} (or set TORCH_HOME), "
                "or pass pretrained=PATH to a torchvision-format state dict, or train from scratch "
                "(pretrained=None)."
            ) from None
    path = Path(pretrained)
    if not path.is_file():
        raise PretrainedWeightsError(f"{path}: pretrained weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise PretrainedWeightsError(f"{path}: cannot read as a state dict ({e})") from None
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    reference = torchvision.models.resnet18(weights=None).state_dict()
    missing = sorted(set(reference) - set(state))
    if missing:
        raise PretrainedWeightsError(
            f"{path}: not a torchvision resnet18 state dict (missing {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''})"
        )
    return {k: v for k, v in state.items() if k in reference}


class SparseFeatureNet(nn.Module):
    """resnet18 trunk -> ReLU -> TopK(k) -> Linear(d, n_targets).

    Args:
        k: active features per image; None builds the dense baseline (no TopK).
        n_targets: number of regression targets T.
        backbone: torchvision trunk name; only ``resnet18`` (d = 512).
        pretrained: None (random init), ``"imagenet"`` (torchvision weights API; uses the
            torch hub cache, downloads where there is internet) or a path to a torchvision-format
            resnet18 state dict (``.pth``/``.pt`` loaded with ``weights_only=True``, or
            ``.safetensors``). Its ``fc`` layer is replaced by the sparse head.

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
    ) -> None:
        super().__init__()
        if backbone not in BACKBONE_DIMS:
            raise ValueError(f"backbone must be one of {sorted(BACKBONE_DIMS)}, got {backbone!r}")
        if n_targets <= 0:
            raise ValueError(f"n_targets must be positive, got {n_targets}")
        self.d = BACKBONE_DIMS[backbone]
        self.k = k
        self.backbone_name = backbone
        self.trunk = _resnet18_trunk(pretrained)
        self.relu = nn.ReLU()
        self.topk = TopK(k, self.d) if k is not None else None
        self.head = nn.Linear(self.d, n_targets)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) pooled (dense) features after the ReLU, before TopK."""
        return self.relu(self.trunk(x))

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d, h, w) spatial maps of the last convolutional block, before average pooling.

        For resnet18 this is the (post-ReLU) output of ``layer4``: h = w = ceil(H / 32), e.g.
        5x5 for 144 px and 2x2 for 64 px. The ReLU is applied again (a no-op on these
        non-negative maps) so that the pixel mean of each map equals :meth:`pooled` exactly.
        """
        t = self.trunk
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
            return SFNetOutput(predictions=self.linear_head(f), sparse=f)
        sparse, values, indices = self.topk.select(f)
        return SFNetOutput(self.linear_head(sparse), sparse, indices, values)
