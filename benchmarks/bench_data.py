"""Data-path throughput, measured side by side in one run.

Prints images/s of
  - the folder store (JPEG decode + centre crop, then flips + normalization as in training),
  - the packed store (memory-mapped uint8 read + crop, same flips + normalization),
  - the SFNet training step (forward + backward + Ranger step) at the same image size,
and, as its last two lines, ``packed_over_folder=<x>`` and ``loader_over_model=<y>`` (packed
loader images/s over model images/s; the goal is >= 5 so that an epoch costs <= 1.05x the pure
model time). Reading and transforms run on one thread (no prefetch, torch threads = 1), so the loader
figures are per core; the model step uses torch's default threads.

    .venv/bin/python benchmarks/bench_data.py [--n 256] [--size 160] [--crop 144]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from sfnet.config import TrainConfig
from sfnet.data.batches import Normalization, augment, draw_flips, iter_batches
from sfnet.data.store import FolderImages, PackedImages, open_images, prepare
from sfnet.model import SparseFeatureNet
from sfnet.optim import ranger


def make_folder(root: Path, n: int, size: int, seed: int = 0) -> list[int]:
    """``n`` galaxy-like JPEGs (noisy elliptical blobs, quality 90) and a catalog."""
    rng = np.random.default_rng(seed)
    ids = [1237648704043942100 + i for i in range(n)]
    pd.DataFrame({"objID": ids, "oh_p50": rng.normal(8.9, 0.2, n)}).to_csv(
        root / "galaxies.csv", index=False
    )
    (root / "images").mkdir()
    yy, xx = np.mgrid[0:size, 0:size] - size / 2
    for o in ids:
        q, pa, r = rng.uniform(0.3, 1), rng.uniform(0, np.pi), rng.uniform(4, 20)
        u = xx * np.cos(pa) + yy * np.sin(pa)
        v = (-xx * np.sin(pa) + yy * np.cos(pa)) / q
        prof = np.exp(-np.hypot(u, v) / r)
        col = rng.uniform(0.5, 1.0, 3)
        img = prof[..., None] * col * 220 + rng.normal(12, 6, (size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            root / "images" / f"{o}.jpg", quality=90
        )
    return ids


def loader_rate(images, batch: int, passes: int, transforms: bool, seed: int = 0) -> float:
    """images/s of read (+ flips + normalization) over ``passes`` shuffled epochs, 1 thread."""
    norm = Normalization((0.1, 0.1, 0.1), (0.2, 0.2, 0.2))
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    n = 0
    try:
        t0 = time.perf_counter()
        for _ in range(passes):
            rows = rng.permutation(len(images))
            for _, xb in iter_batches(images, rows, batch, prefetch=0):
                if transforms:
                    xb = augment(xb, norm, draw_flips(len(xb), gen))
                n += xb.shape[0]
        return n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)


def model_rate(crop: int, batch: int, steps: int) -> float:
    """images/s of SFNet (k=4, resnet18) training steps on CPU at ``crop`` px."""
    torch.manual_seed(0)
    net = SparseFeatureNet(k=4, n_targets=1)
    net.train()
    opt = ranger(net.parameters(), TrainConfig())
    x = torch.randn(batch, 3, crop, crop)
    y = torch.randn(batch, 1)

    def step() -> None:
        opt.zero_grad()
        loss = torch.sqrt(torch.mean((net(x).predictions - y) ** 2))
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="galaxies")
    ap.add_argument("--size", type=int, default=160, help="stored cutout side (px)")
    ap.add_argument("--crop", type=int, default=144, help="centre crop (px)")
    ap.add_argument("--batch", type=int, default=32, help="batch size")
    ap.add_argument("--steps", type=int, default=3, help="timed model steps")
    args = ap.parse_args()
    print(
        f"torch threads: {torch.get_num_threads()}; {args.n} JPEGs {args.size}px -> crop {args.crop}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ids = make_folder(root, args.n, args.size)
        folder = open_images(root, ids, crop=args.crop)
        assert isinstance(folder, FolderImages)
        folder_read = loader_rate(folder, args.batch, passes=2, transforms=False)
        folder_ips = loader_rate(folder, args.batch, passes=2, transforms=True)
        t0 = time.perf_counter()
        prepare(root, workers=None)
        prep_s = time.perf_counter() - t0
        packed = open_images(root, ids, crop=args.crop)
        assert isinstance(packed, PackedImages)
        assert np.array_equal(packed[np.arange(8)], folder[np.arange(8)])
        packed_read = loader_rate(packed, args.batch, passes=10, transforms=False)
        packed_ips = loader_rate(packed, args.batch, passes=10, transforms=True)
    model_ips = model_rate(args.crop, args.batch, args.steps)
    print(f"prepare: {args.n / prep_s:.0f} images/s (all cores, incl. process start-up)")
    print(f"folder store, decode+crop:              {folder_read:.0f} images/s (1 thread)")
    print(f"packed store, read+crop:                {packed_read:.0f} images/s (1 thread)")
    print(f"folder store, decode+crop+flips+norm:   {folder_ips:.0f} images/s (1 thread)")
    print(f"packed store, read+crop+flips+norm:     {packed_ips:.0f} images/s (1 thread)")
    print(f"SFNet training step (batch {args.batch}, {args.crop}px): {model_ips:.1f} images/s")
    print(f"packed_over_folder={packed_ips / folder_ips:.2f}")
    print(f"loader_over_model={packed_ips / model_ips:.1f}")


if __name__ == "__main__":
    main()
