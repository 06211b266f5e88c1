"""Extra cost of the TopK layer: median training-step time of SFNet (k=4) vs the dense baseline.

One step = forward + backward + Ranger step on a batch of 64 images of 3x144x144 (the paper's
sizes). The two models are timed interleaved (A B A B ...) in one process so that machine load
affects both alike. Last line: ``topk_overhead_ratio=<SFNet median / dense median>``.
``--backbone`` takes every trunk sfnet trains (resnet18, a timm name such as resnet50 or
convnext_nano, hf_hub:ORG/NAME from the hub cache); the TopK layer acts on its d pooled features.

    python benchmarks/bench_topk_overhead.py [--backbone resnet18] [--reps 15] [--size 144] \
        [--batch 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sfnet.config import TrainConfig
from sfnet.model import SparseFeatureNet
from sfnet.optim import ranger
from sfnet.train import rmse_loss


def make_step(
    k: int | None,
    batch: int,
    size: int,
    device: torch.device,
    amp: bool,
    cl: bool,
    backbone: str = "resnet18",
):
    torch.manual_seed(0)
    net = SparseFeatureNet(k, n_targets=4, backbone=backbone).to(device)
    if cl:
        net = net.to(memory_format=torch.channels_last)
    opt = ranger(net.parameters(), TrainConfig())
    x = torch.randn(batch, 3, size, size, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randn(batch, 4, device=device)

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = net(x)
        loss = rmse_loss(out.predictions, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=144)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument(
        "--backbone", default="resnet18", help="resnet18, a timm name or hf_hub:ORG/NAME"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: on for CUDA)",
    )
    ap.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last (default: on for CUDA)",
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    amp = args.amp if args.amp is not None else device.type == "cuda"
    cl = args.channels_last if args.channels_last is not None else device.type == "cuda"
    steps = {
        "sfnet": make_step(args.k, args.batch, args.size, device, amp, cl, args.backbone),
        "dense": make_step(None, args.batch, args.size, device, amp, cl, args.backbone),
    }
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.reps):
        for name, step in steps.items():
            times[name].append(step())
    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"backbone={args.backbone} device={device} amp={amp} channels_last={cl} batch={args.batch} size={args.size} "
        f"threads={torch.get_num_threads()} reps={args.reps}"
    )
    for name in steps:
        print(f"{name}_step_s={med[name]:.4f} {name}_images_per_s={args.batch / med[name]:.1f}")
    print(f"topk_overhead_ratio={med['sfnet'] / med['dense']:.4f}")


if __name__ == "__main__":
    main()
