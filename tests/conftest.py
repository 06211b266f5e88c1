"""Shared fixtures: a tiny learnable image set in the packed-array (.npz) form."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sfnet.data.dataset import save_npz

# `make test` runs two pytest workers of one thread each (OMP_NUM_THREADS=1)
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


def toy_train_args(epochs: int, batch_size: int = 32) -> list[str]:
    """``sfnet train`` options for the toy set: 32 px, k=4, batch ``batch_size`` (32, as
    ``toy_config``), lr 0.01, CPU, quiet, batch-norm statistics recomputed on 64 training
    galaxies."""
    args = "--crop 32 --k 4 --lr 0.01 --bn-recompute 64 --device cpu --no-progress"
    return [*args.split(), "--batch-size", str(batch_size), "--epochs", str(epochs)]


def cli_on_one_thread(argv: list[str]) -> int:
    """``sfnet`` in this process on one thread, as the suite's subprocesses run
    (OMP_NUM_THREADS=1): a reference for them that costs no interpreter start (a different
    thread count may sum floats in another order)."""
    from sfnet.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


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


@pytest.fixture(scope="session")
def trained_toy_run(toy_npz, tmp_path_factory) -> Path:
    """A k = 4 run trained for one epoch on the toy set (shared; do not modify it)."""
    from sfnet.train import fit
    from tests.test_train import toy_config

    out = tmp_path_factory.mktemp("runs") / "k4"
    fit(toy_config(toy_npz, epochs=1), out)
    return out


REPORT_LINES = ["log_nii_6584_flux", "log_h_alpha_flux", "log_oiii_5007_flux", "log_h_beta_flux"]
REPORT_N = 60
REPORT_PX = 64


def _with_truth(load):
    """Wrap Run.data so the catalog carries synthetic-style true_* factors."""

    def load_data(self):
        data = load(self)
        rng = np.random.default_rng(7)
        data.catalog = data.catalog.assign(
            true_line=data.y[:, 0] * 2.0, true_noise=rng.normal(size=len(data.y))
        )
        return data

    return load_data


@pytest.fixture(scope="session")
def analysed_runs(tmp_path_factory):
    """(sparse run, dense run, analysis summary): a 60-galaxy bpt_lines run trained one epoch,
    analysed with synthetic-style true_* factors and a dense counterpart (shared; read only).

    64 px images, so resnet18's spatial feature maps are 2x2 (the map and explanation tests
    check exact identities on them, not learned behaviour)."""
    from sfnet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from sfnet.runs import Run
    from sfnet.train import fit
    from sfnet.workflows.analyze import AnalysisOptions, analyze_run

    root = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    y = rng.normal(size=(REPORT_N, 4)).astype(np.float32) + np.array(
        [1.0, 1.5, 0.8, 1.2], np.float32
    )
    images = rng.integers(0, 256, (REPORT_N, 3, REPORT_PX, REPORT_PX), dtype=np.uint8)
    images[:, 0] = np.clip(images[:, 0] * 0.5 + 60 * (y[:, :1, None] - 0.0), 0, 255)
    save_npz(
        root / "data.npz", images, y, np.arange(REPORT_N, dtype=np.int64) + 10**17, REPORT_LINES
    )
    data = DataConfig(path=str(root / "data.npz"), target="bpt_lines", crop=REPORT_PX)
    train = TrainConfig(epochs=1, batch_size=16, device="cpu")
    sparse = fit(RunConfig(data, ModelConfig(k=4), train), root / "sparse").run_dir
    # the dense baseline has the same weights minus TopK: reuse them instead of training again
    dense = root / "dense"
    shutil.copytree(sparse, dense)
    meta = json.loads((dense / "model.json").read_text())
    (dense / "model.json").write_text(json.dumps({**meta, "k": None}))
    dense_cfg = RunConfig.load(dense / "config.toml")
    dense_cfg.model.k = None  # model.json and config.toml agree (load_run cross-checks them)
    dense_cfg.save(dense / "config.toml")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Run, "data", _with_truth(Run.data))
        summary = analyze_run(sparse, AnalysisOptions(dense=str(dense)))
    return sparse, dense, summary


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline Hugging Face cache holding a small timm encoder (``tests.test_model.HUB_REPO``);
    HF_HUB_OFFLINE=1, so any download attempt fails."""
    from tests.test_model import make_hub_encoder

    cache = tmp_path / "hf-cache"
    make_hub_encoder(cache)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
