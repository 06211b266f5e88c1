"""Synthetic survey rendering speed: galaxies per second at 64 px, 1 process vs all cores.

Prints ``galaxies_per_s=<x>`` (all cores, the goal is >= 100 on 2 cores), the single-process
rate measured in the same run, and the machine's load average (other work on the cores slows
both numbers down).

    python benchmarks/bench_synth.py [--n 600] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sfnet.data.synthetic import _default_workers, synthesize


def _rate(n: int, size: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        synthesize(Path(tmp) / "data", n, size=size, seed=0, workers=workers)
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=600, help="galaxies per measurement")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels")
    args = ap.parse_args()
    workers = _default_workers()
    _rate(20, args.size, 1)  # warm-up: imports, GalSim caches
    one = _rate(args.n, args.size, 1)
    many = _rate(args.n, args.size, workers)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"size={args.size} n={args.n} workers={workers} load_avg_1min={load:.1f}")
    print(f"galaxies_per_s_1proc={one:.1f}")
    print(f"galaxies_per_s={many:.1f}")
    print(f"speedup={many / one:.2f}")


if __name__ == "__main__":
    main()
