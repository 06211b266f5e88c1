"""End-to-end training throughput: ``sfnet train`` epochs vs the bare model step, in one run.

Builds a packed ``.npz`` of N galaxies from the real SDSS sample in ``examples/`` (its 400 JPEGs
resized to --size and tiled with random flips/rolls so no two rows are identical), runs
``sfnet train`` on it for --epochs (data loading, flips, normalisation, validation and
checkpoints included), and times the bare SFNet training step (forward + backward + Ranger) on
the same device, batch size and precision in the same process. Prints, last:

- ``epoch_images_per_s``: training images per second of a whole sfnet epoch (median over the
  epochs after the first, which pays for warm-up);
- ``bare_images_per_s``: the same for the bare step alone;
- ``epoch_over_bare=<x>``: bare / epoch throughput (1.0 = sfnet adds nothing to the model);
- ``paper_scale_epoch_h`` / ``paper_scale_run_h``: an *estimate* for the paper's 250,207
  galaxies (80 % trained per epoch, 20 epochs) at the measured epoch throughput.

    python benchmarks/bench_train_epoch.py [--n 4096] [--epochs 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from sfnet.config import TrainConfig
from sfnet.model import SparseFeatureNet
from sfnet.optim import ranger

REAL = Path(__file__).resolve().parents[1] / "examples" / "sdss-metallicity-400"
PAPER_N = 250_207


def make_npz(path: Path, n: int, size: int, seed: int = 0) -> None:
    """``n`` galaxies tiled from the real sample, (n, 3, size, size) uint8, metallicity y."""
    cat = pd.read_csv(REAL / "galaxies.csv", dtype={"objID": "int64"})
    base = np.stack(
        [
            np.asarray(
                Image.open(REAL / "images" / f"{i}.jpg").convert("RGB").resize((size, size))
            ).transpose(2, 0, 1)
            for i in cat["objID"]
        ]
    )
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(base), n)
    images = base[src]
    flip = rng.random(n) < 0.5
    images[flip] = images[flip, :, :, ::-1]
    shift = rng.integers(-3, 4, (n, 2))
    for r in range(n):  # small rolls make every row distinct
        images[r] = np.roll(images[r], tuple(shift[r]), axis=(1, 2))
    y = cat["oh_p50"].to_numpy(np.float32)[src, None]
    np.savez(
        path,
        images=images,
        y=y,
        objID=np.arange(1, n + 1, dtype=np.int64),
        target_names=np.array(["oh_p50"]),
    )


def bare_images_per_s(args: argparse.Namespace, device: torch.device, amp: bool) -> float:
    """Median images/s of the bare SFNet step (k=4) at --crop, same batch and precision."""
    torch.manual_seed(0)
    net = SparseFeatureNet(4, n_targets=1).to(device)
    if amp:
        net = net.to(memory_format=torch.channels_last)
    opt = ranger(net.parameters(), TrainConfig())
    x = torch.randn(args.batch, 3, args.crop, args.crop, device=device)
    y = torch.randn(args.batch, 1, device=device)
    times = []
    for i in range(args.reps + 3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = net(x)
        loss = torch.sqrt(torch.mean((out.predictions.float() - y) ** 2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return args.batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="galaxies in the packed array")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", type=int, default=160, help="stored image side (px)")
    ap.add_argument("--crop", type=int, default=144)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=20, help="timed bare steps")
    ap.add_argument("--workers", type=int, default=1, help="sfnet train --workers")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folder here")
    args = ap.parse_args()
    device = torch.device(args.device)
    amp = device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "tiled.npz"
        make_npz(npz, args.n, args.size)
        out = args.keep or Path(tmp) / "run"
        cmd = [sys.executable, "-m", "sfnet", "train", "--data", str(npz), "--k", "4"]
        cmd += ["--epochs", str(args.epochs), "--crop", str(args.crop), "--no-progress"]
        cmd += ["--batch-size", str(args.batch), "--device", device.type, "--out", str(out)]
        cmd += ["--workers", str(args.workers), "--overwrite"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=os.environ.copy())
        wall = time.perf_counter() - t0
        recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    n_train = round(args.n * 0.8)
    steady = recs[1:] or recs  # the first epoch pays for warm-up (allocator, cuDNN autotuning)
    epoch_s = statistics.median(r["seconds"] for r in steady)
    epoch_ips = n_train / epoch_s
    bare_ips = bare_images_per_s(args, device, amp)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={name} amp={amp} batch={args.batch} crop={args.crop} n={args.n} "
        f"epochs={args.epochs} workers={args.workers} threads={torch.get_num_threads()}"
    )
    print(f"epoch_seconds={[round(r['seconds'], 2) for r in recs]} train_wall_s={wall:.1f}")
    print(f"epoch_images_per_s={epoch_ips:.1f}")
    print(f"bare_images_per_s={bare_ips:.1f}")
    print(f"epoch_over_bare={bare_ips / epoch_ips:.3f}")
    per_epoch_h = PAPER_N * 0.8 / epoch_ips / 3600
    print(f"paper_scale_epoch_h={per_epoch_h:.3f} (estimate, training images only)")
    print(f"paper_scale_run_h={20 * per_epoch_h:.2f} (estimate, 20 epochs)")


if __name__ == "__main__":
    main()
