"""``sfnet embed``: the pooled features of an encoder (or of a run's trunk) for every galaxy.

The output is the feature file ``compare --features`` / ``reproduce --features`` and the probes
read (:func:`sfnet.analysis.probes.load_feature_table`): a Parquet table with an ``objID``
column and one float32 column per feature (``f0`` .. ``f{d-1}``), one row per galaxy that has an
image (no quality cut).

- ``ENCODER`` a run folder: its trunk's pooled features after the ReLU, before TopK (what the
  head's TopK selects from), on the run's crop; ``pretrained`` is ignored.
- ``ENCODER`` a name (``resnet18``, a timm model, ``hf_hub:ORG/NAME``, or ``zoobot`` for
  :data:`sfnet.model.ZOOBOT_ENCODER`): the encoder's own pooled embedding (timm's
  ``num_classes=0`` output: for Zoobot the representation its authors publish), with its
  pretrained weights (``pretrained``: ``hub``, ``imagenet`` for resnet18, or a file), images
  normalised with its ``pretrained_cfg`` mean/std and resized to its pretrained input size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from sfnet.config import DataConfig, EmbedConfig
from sfnet.errors import UserError
from sfnet.io import atomic_write

log = logging.getLogger(__name__)

#: Short name of the paper's probe encoder (Zoobot), accepted by ``embed`` and ``--features``.
ZOOBOT = "zoobot"


@dataclass
class Embedding:
    """objid (N,), features (N, d) float32, and which encoder made them (``source``)."""

    objid: np.ndarray
    features: np.ndarray
    source: str

    def table(self) -> pd.DataFrame:
        cols = {f"f{j}": self.features[:, j] for j in range(self.features.shape[1])}
        return pd.DataFrame({"objID": self.objid, **cols})


def _is_run(encoder: str) -> bool:
    return Path(encoder).is_dir() and (Path(encoder) / "model.json").is_file()


class _NamedEncoder(nn.Module):
    """A named encoder with its pretrained weights, returning its pooled embedding (N, d)."""

    def __init__(self, name: str, pretrained: str | None) -> None:
        super().__init__()
        from sfnet.model import SparseFeatureNet, encoder_spec, pretrained_normalization

        self.spec = encoder_spec(name, pretrained)
        net = SparseFeatureNet(None, 1, backbone=name, pretrained=pretrained)
        self.trunk = net.trunk
        if self.spec is None:  # torchvision resnet18: the pooled (post-ReLU) features
            self.mean, self.std = pretrained_normalization(name, pretrained)
            self.input = 224
        else:
            self.mean, self.std = self.spec.normalization
            self.input = int(self.spec.input_size[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec is None:
            return self.trunk(x)
        if self.spec.in_chans == 1 and x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        return self.trunk.encoder(x).float()  # timm num_classes=0: the encoder's own pooling


def _forward_all(
    fn, images, norm, size: int | None, batch_size: int, device: torch.device
) -> np.ndarray:
    """(N, d) float32 ``fn`` of every image, normalised then resized to ``size`` px."""
    from sfnet.data.batches import iter_batches

    out = []
    with torch.inference_mode():
        for _, xb in iter_batches(images, np.arange(len(images)), batch_size):
            x = norm.apply(xb.to(device))
            if size is not None and size != x.shape[-1]:
                x = nn.functional.interpolate(
                    x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
                )
            out.append(fn(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def embed(encoder: str, cfg: EmbedConfig) -> Embedding:
    """Pooled features of ``encoder`` (a run folder or an encoder name) for every galaxy of
    ``cfg.path`` that has an image. Raises :class:`sfnet.errors.UserError` in one line (e.g.
    weights absent from the hub cache with no network: where to place them)."""
    from sfnet.data.batches import Normalization
    from sfnet.data.galaxies import open_galaxies
    from sfnet.predict import pooled_features

    cfg.validate()
    from sfnet.runs import default_device

    device = default_device(cfg.device)
    if _is_run(encoder):
        from sfnet.runs import load_run

        run = load_run(Path(encoder), device=device)
        if cfg.crop is not None and cfg.crop != run.meta.crop:
            raise UserError(
                f"{encoder}: the run was trained on {run.meta.crop} px crops, not {cfg.crop}"
            )
        inp = run.galaxies(str(cfg.path) if cfg.path else None)  # the one galaxies loader
        feats = pooled_features(run, inp.images, batch_size=cfg.batch_size)
        log.info(
            "embedded %d galaxies with the trunk of run %s (d = %d)",
            len(feats),
            encoder,
            feats.shape[1],
        )
        return Embedding(inp.objid, feats.astype(np.float32), f"run {encoder}")
    if not cfg.path:
        raise UserError(
            "embed: --data is required with an encoder name (only a run has its own data)"
        )
    from sfnet.model import ZOOBOT_ENCODER

    name = ZOOBOT_ENCODER if encoder == ZOOBOT else encoder
    pretrained = cfg.pretrained
    if name == "resnet18" and pretrained == "hub":
        pretrained = "imagenet"
    model = _NamedEncoder(name, pretrained).to(device).eval()
    size = cfg.size or model.input
    dcfg = DataConfig(path=str(cfg.path), crop=cfg.crop or DataConfig().crop)
    inp = open_galaxies(dcfg.path, target=dcfg.target, crop=dcfg.crop)
    log.info(
        "embedding %d galaxies with %s (%s weights): %d px crops resized to %d px, "
        "normalised with mean %s std %s%s",
        len(inp.objid),
        name,
        pretrained or "random",
        dcfg.crop,
        size,
        [round(v, 4) for v in model.mean],
        [round(v, 4) for v in model.std],
        "; greyscale encoder: it sees the mean of g, r, i"
        if model.spec and model.spec.in_chans == 1
        else "",
    )
    norm = Normalization(tuple(model.mean), tuple(model.std))
    feats = _forward_all(model, inp.images, norm, size, cfg.batch_size, device)
    return Embedding(inp.objid, feats, name)


def write_embedding(emb: Embedding, out: Path) -> Path:
    """Write ``emb`` as a Parquet feature file (atomically); returns ``out``."""
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise UserError(f"{out}: the feature file must end in .parquet")
    table = emb.table()
    atomic_write(out, lambda tmp: table.to_parquet(tmp, index=False))
    return out


def embed_to_file(encoder: str, cfg: EmbedConfig, out: Path) -> Path:
    """:func:`embed` then :func:`write_embedding` (checks ``out`` before any work)."""
    if Path(out).suffix.lower() != ".parquet":
        raise UserError(f"{out}: the feature file must end in .parquet")
    return write_embedding(embed(encoder, cfg), out)


__all__ = ["ZOOBOT", "EmbedConfig", "Embedding", "embed", "embed_to_file", "write_embedding"]
