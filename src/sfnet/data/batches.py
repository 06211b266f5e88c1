"""Batches for training and evaluation: the seeded split, normalization, flips, sharding.

Images are read as uint8 from any :class:`sfnet.data.dataset.ImageArray` (an in-memory array,
the memory-mapped packed store, or the folder store), one batch at a time, and turned into
normalized float32 tensors on the training device.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DistributedSampler

#: ImageNet channel statistics (for ImageNet-initialised trunks), RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random train/validation split of ``n`` rows.

    Returns:
        (train_idx, val_idx): sorted int64 arrays, disjoint, covering 0..n-1;
        ``len(val_idx) == round(n * val_fraction)`` (at least 1 of each when n >= 2).
    """
    if n < 2:
        raise ValueError(f"need at least 2 galaxies to split, got {n}")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


@dataclass
class Normalization:
    """Per-channel normalization of images scaled to [0, 1]: (x / 255 - mean) / std."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def apply(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 tensor (any device) -> float32 normalized tensor."""
        mean = torch.tensor(self.mean, device=x_uint8.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x_uint8.device).view(1, 3, 1, 1)
        return (x_uint8.float().div_(255.0) - mean) / std


def channel_stats(
    images, idx: np.ndarray, max_images: int = 4096, batch: int = 512
) -> Normalization:
    """Per-channel mean/std of the images ``idx`` (at most ``max_images`` of them, evenly spaced).

    Args:
        images: ImageArray of (N, 3, H, W) uint8.
        idx: rows to use (the training split).
    """
    idx = np.asarray(idx)
    if len(idx) > max_images:
        idx = idx[np.linspace(0, len(idx) - 1, max_images).round().astype(np.int64)]
    s = np.zeros(3)
    s2 = np.zeros(3)
    count = 0
    for start in range(0, len(idx), batch):
        x = images[idx[start : start + batch]].astype(np.float64) / 255.0
        s += x.sum(axis=(0, 2, 3))
        s2 += (x**2).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean**2, 1e-12))
    return Normalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))


def random_flips(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Independent random horizontal and vertical flips of each image in (N, C, H, W).

    Only the images drawn for a flip are copied (in place on ``x``).
    """
    flip = torch.rand(x.shape[0], 2, generator=generator) < 0.5
    h = flip[:, 0].nonzero().flatten().to(x.device)
    v = flip[:, 1].nonzero().flatten().to(x.device)
    if len(h):
        x[h] = x[h].flip(3)
    if len(v):
        x[v] = x[v].flip(2)
    return x


def epoch_order(
    n_train: int, epoch: int, seed: int, world_size: int = 1, rank: int = 0
) -> np.ndarray:
    """Positions into the training split for this epoch and this rank.

    Uses torch's :class:`DistributedSampler` (shuffled, seeded by ``seed`` and ``epoch``), so a
    single process and N processes see the same global order.
    """
    sampler = DistributedSampler(
        range(n_train), num_replicas=world_size, rank=rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return np.fromiter(iter(sampler), dtype=np.int64, count=len(sampler))


def iter_batches(
    images,
    rows: np.ndarray,
    batch_size: int,
    prefetch: int = 1,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield (row indices, uint8 tensor (n, 3, H, W)) batches of ``images[rows]`` in order.

    With ``prefetch > 0`` the next batches are read in background threads while the model
    works on the current one (reading from a memory map or decoding releases the GIL).
    """
    starts = range(0, len(rows), batch_size)

    def read(start: int) -> tuple[np.ndarray, torch.Tensor]:
        r = rows[start : start + batch_size]
        return r, torch.from_numpy(np.ascontiguousarray(images[r]))

    if prefetch <= 0:
        for s in starts:
            yield read(s)
        return
    with ThreadPoolExecutor(max_workers=prefetch) as pool:
        pending = [pool.submit(read, s) for s in list(starts)[: prefetch + 1]]
        nxt = prefetch + 1
        all_starts = list(starts)
        while pending:
            fut = pending.pop(0)
            if nxt < len(all_starts):
                pending.append(pool.submit(read, all_starts[nxt]))
                nxt += 1
            yield fut.result()
