"""Shared fixtures: a tiny learnable image set in the packed-array (.npz) form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sfnet.data.dataset import save_npz

torch.set_num_threads(2)


def toy_train_args(epochs: int) -> list[str]:
    """``sfnet train`` options for the toy set: 32 px, k=4, batch 32, lr 0.01, CPU, quiet."""
    args = "--crop 32 --k 4 --batch-size 32 --lr 0.01 --device cpu --quiet"
    return [*args.split(), "--epochs", str(epochs)]


def make_toy_images(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, size, size) uint8 images of a noisy disk; targets (n, 2) = (radius, redness).

    Radius (pixels) and the red/blue balance of the disk are the two targets, so a CNN can learn
    both from the pixels while noise keeps them from being trivial.
    """
    rng = np.random.default_rng(seed)
    radius = rng.uniform(2.0, size / 3, n)
    red = rng.uniform(0.0, 1.0, n)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r2 = xx**2 + yy**2
    disk = (r2[None] <= radius[:, None, None] ** 2).astype(np.float64)
    colour = np.stack([0.3 + 0.7 * red, 0.5 * np.ones(n), 1.0 - 0.7 * red], axis=1)
    img = 200 * disk[:, None] * colour[:, :, None, None] + rng.normal(20, 8, (n, 3, size, size))
    y = np.stack([radius, red], axis=1).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="session")
def toy_npz(tmp_path_factory) -> Path:
    """A 320-galaxy, 32 px, two-target packed array file."""
    images, y = make_toy_images(320)
    path = tmp_path_factory.mktemp("toy") / "toy.npz"
    objid = np.arange(len(y), dtype=np.int64) + 1237648702973411443
    save_npz(path, images, y, objid, ["radius", "redness"])
    return path


@pytest.fixture(scope="session")
def small_npz(tmp_path_factory) -> Path:
    """96 galaxies of the toy set (32 px, targets radius and redness), for quick API tests."""
    images, y = make_toy_images(96)
    path = tmp_path_factory.mktemp("small") / "small.npz"
    save_npz(path, images, y, np.arange(96, dtype=np.int64) + 10**15, ["radius", "redness"])
    return path
