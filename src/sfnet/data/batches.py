"""Batches for training and evaluation: the seeded split, normalization, flips, sharding.

Images are read as uint8 from any :class:`sfnet.data.dataset.ImageArray` (an in-memory array,
the memory-mapped packed store, or the folder store), one batch at a time, in background
threads (:func:`iter_batches`). :func:`device_batches` hands them to the model's device still
as uint8 (a quarter of the float32 bytes; pinned memory and a non-blocking copy on a side
stream on CUDA, one batch ahead), and :func:`augment` turns them into the model's input on that
device in one step: seeded flips, normalization, memory format. The CPU uses the same code.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from sfnet.config import INFERENCE_BATCH

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


def draw_flips(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) bool CPU tensor: per image, flip horizontally (column 0) / vertically (column 1).

    Drawn from ``generator`` (a seeded CPU generator), so a resumed epoch draws the same flips
    whatever the device.
    """
    return torch.rand(n, 2, generator=generator) < 0.5


def augment(
    x_uint8: torch.Tensor,
    norm: Normalization,
    flips: torch.Tensor | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """The model's input from a uint8 batch, on the batch's device, in one step.

    Flips are applied to the uint8 images (a quarter of the bytes of float32) with
    ``torch.where`` on per-image masks (no gather, no host sync), then the images are
    normalized exactly as :meth:`Normalization.apply` does (the same float operations, so the
    result is bit-identical to flipping after normalizing).

    Args:
        x_uint8: (N, 3, H, W) uint8 on the model's device.
        norm: the run's normalization.
        flips: None, or the (N, 2) bool draws of :func:`draw_flips` (any device).
        channels_last: return the batch in channels-last memory format.

    Returns:
        (N, 3, H, W) float32 normalized tensor on ``x_uint8.device``.
    """
    if flips is not None:
        f = flips.to(x_uint8.device, non_blocking=True)
        x_uint8 = torch.where(f[:, 0].view(-1, 1, 1, 1), x_uint8.flip(3), x_uint8)
        x_uint8 = torch.where(f[:, 1].view(-1, 1, 1, 1), x_uint8.flip(2), x_uint8)
    x = norm.apply(x_uint8)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def eval_batch_size(train_batch: int) -> int:
    """Galaxies per forward pass when evaluating: no gradients are kept, so at least
    INFERENCE_BATCH (and twice the training batch), which keeps a large device busy."""
    return max(INFERENCE_BATCH, 2 * train_batch)


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
    pin_memory: bool = False,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield (row indices, uint8 tensor (n, 3, H, W)) batches of ``images[rows]`` in order.

    With ``prefetch > 0`` the next batches are read in background threads while the model
    works on the current one (reading from a memory map or decoding releases the GIL). With
    ``pin_memory`` each batch is placed in page-locked memory by its reader thread, so that the
    copy to a CUDA device can be asynchronous.
    """
    starts = range(0, len(rows), batch_size)

    def read(start: int) -> tuple[np.ndarray, torch.Tensor]:
        r = rows[start : start + batch_size]
        x = torch.from_numpy(np.ascontiguousarray(images[r]))
        return r, (x.pin_memory() if pin_memory else x)

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


def device_batches(
    images,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device | str,
    prefetch: int = 1,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """:func:`iter_batches`, with each uint8 batch already on ``device``.

    On CUDA the batches are read into pinned memory and copied on a side stream one batch
    ahead, so the copy of batch i+1 overlaps the model's work on batch i; the consuming stream
    waits for the copy before using it. On the CPU this is :func:`iter_batches` itself (no
    copy at all).

    Yields:
        (row indices, (n, 3, H, W) uint8 tensor on ``device``).
    """
    device = torch.device(device)
    if device.type != "cuda":
        yield from iter_batches(images, rows, batch_size, prefetch=prefetch)
        return
    stream = torch.cuda.Stream(device)

    def copy(batch: tuple[np.ndarray, torch.Tensor]) -> tuple[np.ndarray, torch.Tensor]:
        with torch.cuda.stream(stream):
            return batch[0], batch[1].to(device, non_blocking=True)

    host = iter_batches(images, rows, batch_size, prefetch=prefetch, pin_memory=True)
    ahead = next(host, None)
    ahead = copy(ahead) if ahead is not None else None
    while ahead is not None:
        r, x = ahead
        torch.cuda.current_stream(device).wait_stream(stream)
        x.record_stream(torch.cuda.current_stream(device))  # keep its memory until used
        nxt = next(host, None)
        ahead = copy(nxt) if nxt is not None else None
        yield r, x
