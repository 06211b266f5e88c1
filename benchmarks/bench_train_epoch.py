"""End-to-end training throughput: ``sfnet train`` epochs vs the bare model step, in one run.

Builds a packed ``.npz`` of N galaxies from the real SDSS sample in ``examples/`` (its 400 JPEGs
resized to --size and tiled with random flips/rolls so no two rows are identical), runs
``sfnet train`` on it for --epochs (data loading, flips, normalisation, validation and
checkpoints included), and times the bare SFNet training step (forward + backward + Ranger) on
the same device, batch size and precision in the same process. Prints, last:

- ``epoch_images_per_s``: training images per second of a whole sfnet epoch (median over the
  epochs after the first, which pays for warm-up);
- ``bare_images_per_s``: the same for the bare step alone;
- ``epoch_over_bare=<x>``: epoch / bare-step throughput (1.0 = sfnet adds nothing to the
  model; the input pipeline, validation and checkpoints make it smaller);
- ``paper_scale_epoch_h`` / ``paper_scale_run_h``: an *estimate* for the paper's 250,207
  galaxies (80 % trained per epoch, 20 epochs) at the measured epoch throughput.

Each ``--batch`` (default 64 and 256) is measured in the same run, at the precision
``sfnet train`` chooses for it (recorded in its model.json) or the one ``--amp on|off`` forces.
``--cuda-graphs`` measures ``sfnet train --cuda-graphs`` and a bare step through
``torch.compile(mode="reduce-overhead")`` (CUDA only: on a CPU it prints one line and measures
nothing). ``--nproc N`` runs the epochs under ``torchrun --nproc_per_node N`` (the bare step
stays one process; ``epoch_over_bare`` is then per process). Every line of a result starts with
``batch=<b> amp=<..> graphs=<on|off> nproc=<n>`` so that several runs can share one log
(``benchmarks/gpu_check.sh``).

    python benchmarks/bench_train_epoch.py [--n 4096] [--epochs 3] [--batch 64 256] [--device cuda]
        [--amp auto|on|off] [--cuda-graphs] [--nproc 1]
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


def bare_images_per_s(
    args: argparse.Namespace, device: torch.device, batch: int, amp: bool, channels_last: bool
) -> float:
    """Median images/s of the bare SFNet step (k=4) at --crop, at the precision the sfnet run
    chose (read from its model.json), on a batch already on the device; with --cuda-graphs the
    forward and backward go through ``torch.compile(mode="reduce-overhead")`` as in
    ``sfnet train --cuda-graphs`` (the first steps, which compile and record, are not timed)."""
    torch.manual_seed(0)
    net = SparseFeatureNet(4, n_targets=1).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = ranger(net.parameters(), TrainConfig())
    step = torch.compile(net, mode="reduce-overhead") if args.cuda_graphs else net
    warm = 5 if args.cuda_graphs else 3
    x = torch.randn(batch, 3, args.crop, args.crop, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randn(batch, 1, device=device)
    times = []
    for i in range(args.reps + warm):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if args.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = step(x)
        loss = torch.sqrt(torch.mean((out.predictions.float() - y) ** 2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warm:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def epoch_images_per_s(args: argparse.Namespace, npz: Path, out: Path, batch: int) -> dict:
    """Run ``sfnet train`` on ``npz`` at ``batch``; epoch throughput and what the run chose."""
    launch = [sys.executable, "-m"]
    if args.nproc > 1:
        launch += ["torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
        launch += ["-m"]
    cmd = [*launch, "sfnet", "train", "--data", str(npz), "--k", "4"]
    cmd += ["--epochs", str(args.epochs), "--crop", str(args.crop), "--no-progress"]
    cmd += ["--batch-size", str(batch), "--device", args.device, "--out", str(out)]
    cmd += ["--workers", str(args.workers), "--overwrite"]
    cmd += {"auto": [], "on": ["--amp"], "off": ["--no-amp"]}[args.amp]
    cmd += ["--cuda-graphs"] if args.cuda_graphs else []
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=os.environ.copy())
    wall = time.perf_counter() - t0
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    meta = json.loads((out / "model.json").read_text())
    steady = recs[1:] or recs  # the first epoch pays for warm-up (allocator, cuDNN autotuning)
    epoch_s = statistics.median(r["seconds"] for r in steady)
    return {
        "ips": round(args.n * 0.8) / epoch_s,
        "seconds": [round(r["seconds"], 2) for r in recs],
        "wall": wall,
        "precision": meta.get("precision", {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="galaxies in the packed array")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--size", type=int, default=160, help="stored image side (px)")
    ap.add_argument("--crop", type=int, default=144)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--reps", type=int, default=20, help="timed bare steps")
    ap.add_argument("--workers", type=int, default=1, help="sfnet train --workers")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--amp",
        choices=("auto", "on", "off"),
        default="auto",
        help="bf16 autocast of sfnet train: auto (its own choice), on (--amp), off (--no-amp)",
    )
    ap.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="sfnet train --cuda-graphs and a reduce-overhead bare step (CUDA only)",
    )
    ap.add_argument("--nproc", type=int, default=1, help="processes (torchrun) for the epochs")
    args = ap.parse_args()
    device = torch.device(args.device)
    tag = f"amp={args.amp} graphs={'on' if args.cuda_graphs else 'off'} nproc={args.nproc}"
    if args.cuda_graphs and device.type != "cuda":
        print(f"{tag}: cuda graphs skipped on {device.type} (CUDA only): not measured")
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device={name} crop={args.crop} n={args.n} epochs={args.epochs} "
        f"workers={args.workers} threads={torch.get_num_threads()} {tag}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "tiled.npz"
        make_npz(npz, args.n, args.size)
        for batch in args.batch:
            run = epoch_images_per_s(args, npz, Path(tmp) / f"run{batch}", batch)
            prec = run["precision"]
            amp = prec.get("autocast") == "bfloat16"
            cl = bool(prec.get("channels_last"))
            bare = bare_images_per_s(args, device, batch, amp, cl)
            at = f"batch={batch} {tag}"
            print(
                f"{at} precision={prec.get('autocast')}"
                f"{'+channels_last' if cl else ''} epoch_seconds={run['seconds']} "
                f"train_wall_s={run['wall']:.1f}"
            )
            print(f"{at} epoch_images_per_s={run['ips']:.1f}")
            print(f"{at} bare_images_per_s={bare:.1f}")
            per = " per process" if args.nproc > 1 else ""
            ratio = run["ips"] / args.nproc / bare
            print(f"{at} epoch_over_bare={ratio:.3f}{per} (1.0: sfnet adds nothing)")
            per_epoch_h = PAPER_N * 0.8 / run["ips"] / 3600
            print(f"{at} paper_scale_epoch_h={per_epoch_h:.3f} (estimate, training only)")
            print(f"{at} paper_scale_run_h={20 * per_epoch_h:.2f} (estimate, 20 epochs)")


if __name__ == "__main__":
    main()
