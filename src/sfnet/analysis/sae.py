"""A TopK sparse autoencoder (SAE) on pooled features: post-hoc sparsity, beside SFNet's.

The standard recipe (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"):

- inputs scaled by one scalar (their RMS distance to the mean), so the learning rate does not
  depend on the features' units;
- a tied pre-encoder bias ``b_pre`` (initialised at the data mean) subtracted before encoding
  and added back after decoding;
- codes ``z = TopK(ReLU(W_enc (x - b_pre) + b_enc))``: exactly ``k`` (or fewer) non-zero latents;
- unit-norm decoder directions (rows of ``W_dec``): the gradient component parallel to each row
  is removed before every step and the rows are renormalised after it;
- encoder initialised as the decoder's transpose;
- dead latents (no activation for ``dead_after`` training examples) trained by the auxiliary
  AuxK loss: the ``aux_k`` largest dead pre-activations reconstruct the residual.

No maintained SAE library fits cleanly: ``sae-lens`` and ``eai-sparsify`` pull in
transformers/datasets/accelerate, ``overcomplete`` opencv/timm/scikit-image; the recipe is
~150 lines of torch.

Saved like a run: ``sae.toml`` (the :class:`SAEConfig`), ``sae.json`` (dimensions, input scale,
final training FVU) and ``sae.safetensors`` (weights), each written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sfnet.config import check_fields, load_toml, save_toml, setting
from sfnet.errors import DataError, RunFolderError

log = logging.getLogger(__name__)

SAE_CONFIG = "sae.toml"
SAE_META = "sae.json"
SAE_WEIGHTS = "sae.safetensors"


@dataclass
class SAEConfig:
    """Settings of one sparse autoencoder (saved as ``sae.toml``)."""

    k: int = setting(4, "active latents per galaxy (TopK)", ge=1)
    expansion: int = setting(
        4, "dictionary size as a multiple of the input feature dimension", ge=1
    )
    n_latents: int | None = setting(
        None, "dictionary size (none: expansion x the feature dimension)", ge=1
    )
    steps: int = setting(600, "optimizer steps (Adam)", ge=1)
    batch_size: int = setting(256, "examples per step", ge=1)
    lr: float = setting(2e-3, "Adam learning rate (inputs are scaled to unit RMS)", gt=0)
    aux_k: int = setting(32, "dead latents used by the AuxK loss", ge=1)
    aux_coef: float = setting(1 / 32, "weight of the AuxK loss", ge=0)
    dead_after: int = setting(
        2000, "a latent is dead after this many training examples without activating", ge=1
    )
    seed: int = setting(0, "seed of the initial weights and batch order")

    def validate(self) -> None:
        check_fields(self, "sae")

    def latents(self, d: int) -> int:
        """The dictionary size for inputs of dimension ``d``."""
        return int(self.n_latents) if self.n_latents is not None else int(self.expansion * d)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "sae") -> SAEConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise RunFolderError(f"{where}: unknown SAE setting(s) {unknown}")
        cfg = cls(**{k: (None if v == "none" else v) for k, v in d.items()})
        cfg.validate()
        return cfg


class SparseAutoencoder(torch.nn.Module):
    """TopK sparse autoencoder ``x (N, d) -> codes (N, n_latents) -> x_hat (N, d)``.

    Codes are in the scaled space (``x / scale``); :meth:`decode` returns the original units.
    Use :meth:`fit` to train one and :meth:`load` to read a saved folder.
    """

    def __init__(self, d: int, n_latents: int, k: int, scale: float = 1.0) -> None:
        super().__init__()
        if not 1 <= k <= n_latents:
            raise DataError(f"sae: k must be in 1..{n_latents} (the dictionary size), got {k}")
        self.d, self.n_latents, self.k = int(d), int(n_latents), int(k)
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.b_pre = torch.nn.Parameter(torch.zeros(d))
        w = torch.randn(n_latents, d)
        self.W_dec = torch.nn.Parameter(w / w.norm(dim=1, keepdim=True))  # rows: unit directions
        self.W_enc = torch.nn.Parameter(self.W_dec.detach().clone())  # (n_latents, d)
        self.b_enc = torch.nn.Parameter(torch.zeros(n_latents))
        self.config: SAEConfig | None = None
        self.meta: dict[str, Any] = {}

    # --- the model -------------------------------------------------------------------------
    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_latents) encoder outputs before TopK, for inputs in original units (B, d)."""
        return F.linear(x / self.scale - self.b_pre, self.W_enc, self.b_enc)

    def _topk(self, pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        vals, idx = pre.topk(k, dim=1)
        return F.relu(vals), idx

    def _decode_sparse(self, vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Scaled-space reconstruction (without b_pre) from (B, k) values and indices."""
        return F.embedding_bag(idx, self.W_dec, per_sample_weights=vals, mode="sum")

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction in scaled space (B, d), values (B, k), indices (B, k),
        pre-activations (B, n_latents))."""
        pre = self.pre_activations(x)
        vals, idx = self._topk(pre, self.k)
        return self._decode_sparse(vals, idx) + self.b_pre, vals, idx, pre

    # --- numpy API --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """k-sparse codes (N, n_latents) float32 of features ``x`` (N, d), original units."""
        x = _check_features(x, self.d)
        out = np.zeros((len(x), self.n_latents), dtype=np.float32)
        dev = self.b_pre.device
        for s in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[s : s + batch_size], dtype=torch.float32, device=dev)
            vals, idx = self._topk(self.pre_activations(xb), self.k)
            codes = torch.zeros(len(xb), self.n_latents, device=dev)
            codes.scatter_(1, idx, vals)
            out[s : s + len(xb)] = codes.cpu().numpy()
        return out

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstructed features (N, d) float32, original units, from codes (N, n_latents)."""
        c = torch.as_tensor(np.asarray(codes, dtype=np.float32), device=self.b_pre.device)
        if c.ndim != 2 or c.shape[1] != self.n_latents:
            raise DataError(f"sae: codes must be (N, {self.n_latents}), got {tuple(c.shape)}")
        return ((c @ self.W_dec + self.b_pre) * self.scale).cpu().numpy()

    def directions(self) -> np.ndarray:
        """(n_latents, d) unit decoder directions, in the scaled input space."""
        return self.W_dec.detach().cpu().numpy().copy()

    def fvu(self, x: np.ndarray) -> float:
        """Fraction of variance unexplained by the reconstruction of ``x`` (N, d)."""
        x = _check_features(x, self.d).astype(np.float64)
        err = ((self.decode(self.encode(x)) - x) ** 2).sum()
        return float(err / max(((x - x.mean(axis=0)) ** 2).sum(), 1e-30))

    # --- training ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, x: np.ndarray, config: SAEConfig | None = None) -> SparseAutoencoder:
        """Train an SAE on features ``x`` (N, d) (e.g. a dense CNN's pooled features).

        Returns the model (CPU, eval mode) with ``meta`` holding the final training FVU, the
        fraction of dead latents and the mean number of active latents per example.
        """
        cfg = copy_config(config)
        x = _check_features(x, None)
        n, d = x.shape
        gen = torch.Generator().manual_seed(int(cfg.seed))
        torch_rng = torch.random.fork_rng()
        with torch_rng:
            torch.manual_seed(int(cfg.seed))
            xt = torch.as_tensor(x, dtype=torch.float32)
            mean = xt.mean(0)
            scale = float(((xt - mean) ** 2).sum(1).mean().sqrt() / np.sqrt(d)) or 1.0
            model = cls(d, cfg.latents(d), cfg.k, scale=scale)
        model.config = cfg
        with torch.no_grad():
            model.b_pre.copy_(mean / scale)
        xs = xt / scale
        var = ((xs - xs.mean(0)) ** 2).sum(1).mean()
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        last_fired = torch.zeros(model.n_latents, dtype=torch.long)
        seen, bs = 0, min(cfg.batch_size, n)
        model.train()
        for _ in range(cfg.steps):
            batch = xs[torch.randint(0, n, (bs,), generator=gen)]
            recon, vals, idx, pre = model(batch * scale)
            loss = ((recon - batch) ** 2).sum(1).mean() / var
            seen += bs
            fired = torch.zeros(model.n_latents, dtype=torch.bool)
            fired[idx[vals > 0]] = True
            last_fired[fired] = seen
            dead = (seen - last_fired) > cfg.dead_after
            if cfg.aux_coef > 0 and bool(dead.any()):
                loss = loss + cfg.aux_coef * _aux_loss(model, batch, recon, pre, dead, cfg.aux_k)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            _project_decoder_grad(model)
            opt.step()
            with torch.no_grad():
                model.W_dec.div_(model.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))
        model.eval()
        codes = model.encode(x)
        active = (codes > 0).sum(1)
        model.meta = {
            "d": d,
            "n_latents": model.n_latents,
            "k": model.k,
            "scale": scale,
            "n_train": int(n),
            "train_fvu": model.fvu(x),
            "mean_active": float(active.mean()),
            "dead_fraction": float(((codes > 0).sum(0) == 0).mean()),
        }
        log.info(
            "SAE %d -> %d latents, k=%d: train FVU %.4f, dead %.1f %%",
            d,
            model.n_latents,
            model.k,
            model.meta["train_fvu"],
            100 * model.meta["dead_fraction"],
        )
        return model

    # --- folders ------------------------------------------------------------------------------
    def save(self, folder: Path | str) -> Path:
        """Write ``sae.toml``, ``sae.json`` and ``sae.safetensors`` into ``folder``
        (each atomically; the weights last but one, the metadata last)."""
        from safetensors.torch import save_file

        from sfnet.io import atomic_write, atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_toml(folder / SAE_CONFIG, _toml_dict(self.config or SAEConfig(k=self.k)))
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(folder / SAE_WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
        meta = {"d": self.d, "n_latents": self.n_latents, "k": self.k} | self.meta
        atomic_write_json(folder / SAE_META, meta)
        return folder

    @classmethod
    def load(cls, folder: Path | str, device: str | torch.device = "cpu") -> SparseAutoencoder:
        """A saved SAE (no unpickling: TOML, JSON and safetensors)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (SAE_CONFIG, SAE_META, SAE_WEIGHTS):
            if not (folder / name).is_file():
                raise RunFolderError(f"{folder}: not an SAE folder (no {name})")
        try:
            meta = json.loads((folder / SAE_META).read_text())
            d, n_latents, k = int(meta["d"]), int(meta["n_latents"]), int(meta["k"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise RunFolderError(f"{folder / SAE_META}: unreadable SAE metadata ({e})") from None
        model = cls(d, n_latents, k)
        state = load_file(str(folder / SAE_WEIGHTS))
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise RunFolderError(
                f"{folder / SAE_WEIGHTS}: does not match {SAE_META}: {e}"
            ) from None
        model.config = SAEConfig.from_dict(load_toml(folder / SAE_CONFIG), str(folder / SAE_CONFIG))
        model.meta = meta
        return model.to(device).eval()


def copy_config(config: SAEConfig | None) -> SAEConfig:
    cfg = dataclasses.replace(config) if config is not None else SAEConfig()
    cfg.validate()
    return cfg


def _toml_dict(cfg: SAEConfig) -> dict[str, Any]:
    return {k: ("none" if v is None else v) for k, v in cfg.to_dict().items()}


def _check_features(x: np.ndarray, d: int | None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or (d is not None and x.shape[1] != d) or len(x) == 0:
        want = f"(N, {d})" if d is not None else "(N, d) with N >= 1"
        raise DataError(f"sae: features must be {want}, got {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("sae: features contain non-finite values")
    return x


def _aux_loss(
    model: SparseAutoencoder,
    batch: torch.Tensor,
    recon: torch.Tensor,
    pre: torch.Tensor,
    dead: torch.Tensor,
    aux_k: int,
) -> torch.Tensor:
    """AuxK: the top ``aux_k`` dead latents reconstruct the residual (normalised MSE)."""
    resid = (batch - recon).detach()
    pre = pre.masked_fill(~dead, float("-inf"))
    vals, idx = model._topk(pre, min(aux_k, int(dead.sum())))
    aux = model._decode_sparse(vals, idx)
    denom = ((resid - resid.mean(0)) ** 2).sum(1).mean().clamp_min(1e-12)
    return ((aux - resid) ** 2).sum(1).mean() / denom


def _project_decoder_grad(model: SparseAutoencoder) -> None:
    """Remove the gradient component parallel to each (unit) decoder row."""
    g = model.W_dec.grad
    if g is None:
        return
    w = model.W_dec.detach()
    g.sub_((g * w).sum(1, keepdim=True) * w)


def planted_codes(
    n: int, d: int, n_atoms: int, k: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic data ``x = codes @ dictionary`` with exactly ``k`` active atoms per row.

    Returns (x (n, d), dictionary (n_atoms, d) with unit rows, codes (n, n_atoms) >= 0).
    """
    rng = np.random.default_rng(seed)
    dictionary = rng.normal(size=(n_atoms, d))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    codes = np.zeros((n, n_atoms))
    for i in range(n):
        on = rng.choice(n_atoms, k, replace=False)
        codes[i, on] = rng.uniform(0.5, 2.0, k)
    return codes @ dictionary, dictionary, codes


def dictionary_recovery(learned: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """For each planted atom (n_atoms, d), the best cosine with any learned direction."""
    a = learned / np.linalg.norm(learned, axis=1, keepdims=True)
    b = planted / np.linalg.norm(planted, axis=1, keepdims=True)
    return (b @ a.T).max(axis=1)
