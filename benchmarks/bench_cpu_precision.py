"""CPU speed of sfnet's default precision (bf16 autocast + channels-last where the CPU offers it)
against the fp32 contiguous bare torchvision resnet18, side by side in one process.

One training step = forward + backward + Ranger step on a batch of 64 images of 3x144x144 (the
issue's sizes); every setting is timed on the same batches, interleaved (A B C ... A B C ...),
so machine load affects all alike; medians are reported. Settings: the bare resnet18 (fp32,
contiguous, fc -> 1 output), then SFNet (k=4) in fp32, channels-last, bf16, bf16+channels-last
and ``default`` (:func:`sfnet.precision.choose_precision` with ``auto``). Inference (forward
only, ``torch.inference_mode``) is timed the same way for fp32 and the default.
``--compile`` instead times ``torch.compile`` of the default training step against the eager
step: its compile time (the first steps) and steady step time, and says whether it pays on
``--epochs`` epochs of ``--steps-per-epoch`` steps (the real 400-galaxy sample: 320 training
galaxies = 5 steps).

``--selection RUN`` compares TopK's selection of a trained run on its own galaxies in fp32 and
in bf16 (with the trunk's pooling in fp32, as sfnet does, and in bf16): the share of galaxies
whose selected feature set differs from fp32, and of exact ties at the k-th value.

Lines to read: ``cpu_speedup_vs_fp32_bare=<bare step / default step>`` and
``inference_speedup_vs_fp32=<fp32 / default>``.

    python benchmarks/bench_cpu_precision.py [--reps 5] [--size 144] [--batch 64] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import numpy as np
import torch
import torchvision

from sfnet.config import TrainConfig
from sfnet.model import Fp32AvgPool, SparseFeatureNet
from sfnet.optim import ranger
from sfnet.precision import Precision, choose_precision
from sfnet.train import rmse_loss

SETTINGS = {
    "fp32": Precision(None, False, "forced", "cpu"),
    "channels_last": Precision(None, True, "forced", "cpu"),
    "bf16": Precision(torch.bfloat16, False, "forced", "cpu"),
    "bf16+channels_last": Precision(torch.bfloat16, True, "forced", "cpu"),
}


class _Bare(torch.nn.Module):
    """torchvision resnet18 with a 1-output head, returning an object like SFNetOutput."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=1)

    def forward(self, x):
        return SimpleNamespace(predictions=self.net(x))


def make_model(bare: bool, prec: Precision) -> torch.nn.Module:
    torch.manual_seed(0)
    return prec.model(_Bare() if bare else SparseFeatureNet(4, n_targets=1))


def make_train_step(model: torch.nn.Module, prec: Precision, batches, compile_: bool = False):
    opt = ranger(model.parameters(), TrainConfig())
    fwd = torch.compile(model) if compile_ else model
    state = {"i": 0}

    def step() -> float:
        x, y = batches[state["i"] % len(batches)]
        state["i"] += 1
        t0 = time.perf_counter()
        with prec.autocast():
            out = fwd(prec.images(x))
        loss = rmse_loss(out.predictions, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def make_infer_step(model: torch.nn.Module, prec: Precision, batches):
    model.eval()

    @torch.inference_mode()
    def step() -> float:
        t0 = time.perf_counter()
        for x, _ in batches:
            with prec.autocast():
                model(prec.images(x)).predictions.float()
        return time.perf_counter() - t0

    return step


def interleaved(steps: dict, warmup: int, reps: int) -> dict[str, float]:
    """Median seconds of each step, timed A B C ... A B C ... after ``warmup`` rounds."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(reps):
        for name, step in steps.items():
            times[name].append(step())
    return {name: statistics.median(t) for name, t in times.items()}


def bench_compile(prec: Precision, batches, args) -> None:
    """torch.compile of the default training step: compile time and steady step vs eager."""
    compiled = make_train_step(make_model(False, prec), prec, batches, compile_=True)
    t0 = time.perf_counter()
    for _ in range(2):  # compiles the forward and backward graphs, then one plain step
        compiled()
    compile_s = time.perf_counter() - t0
    eager = make_train_step(make_model(False, prec), prec, batches)
    med = interleaved({"eager": eager, "compiled": compiled}, args.warmup, args.reps)
    n_steps = args.epochs * args.steps_per_epoch
    saved = n_steps * (med["eager"] - med["compiled"])
    print(
        f"compile_first_2_steps_s={compile_s:.1f} compiled_step_s={med['compiled']:.4f} "
        f"eager_step_s={med['eager']:.4f} compile_step_speedup={med['eager'] / med['compiled']:.3f}"
    )
    print(
        f"compile_saves_s={saved:.1f} over {n_steps} steps ({args.epochs} epochs x "
        f"{args.steps_per_epoch}); compile_pays={'yes' if saved > compile_s else 'no'}"
    )


def compare_selection(run_dir: str) -> None:
    """TopK selection of a trained run in fp32 vs bf16 (fp32 pooling, bf16 pooling)."""
    from sfnet.data.loader import iter_batches

    from sfnet.runs import load_run

    run = load_run(run_dir)
    model, k, norm = run.model, run.meta.k, run.meta.normalization
    images = run.load_data().images
    rows = np.arange(len(images))
    feats = {}
    for name, dtype, pool32 in (("fp32", None, True), ("bf16", torch.bfloat16, True),
                                ("bf16_pool_bf16", torch.bfloat16, False)):  # fmt: skip
        prec = Precision(dtype, dtype is not None, name, "cpu")
        model.trunk.avgpool = Fp32AvgPool() if pool32 else torch.nn.AdaptiveAvgPool2d(1)
        prec.model(model)
        out = []
        with torch.inference_mode():
            for _, xb in iter_batches(images, rows, 100):
                with prec.autocast():
                    out.append(model.pooled(prec.images(norm.apply(xb))).float())
        feats[name] = torch.cat(out)
    ref = torch.topk(feats["fp32"], k, dim=1).indices.sort(dim=1).values
    print(f"selection run={run_dir} k={k} galaxies={len(rows)}")
    for name, f in feats.items():
        top = torch.topk(f, k + 1, dim=1).values
        ties = (top[:, k - 1] == top[:, k]) & (top[:, k] > 0)
        idx = torch.topk(f, k, dim=1).indices.sort(dim=1).values
        differ = (idx != ref).any(dim=1).float().mean().item()
        print(
            f"selection[{name}]: differs_from_fp32={differ:.4f} "
            f"ties_at_kth={ties.float().mean().item():.4f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=144)
    ap.add_argument("--n-batches", type=int, default=2, help="distinct batches cycled through")
    ap.add_argument(
        "--compile", action="store_true", help="instead: torch.compile vs eager, default precision"
    )
    ap.add_argument("--epochs", type=int, default=20, help="run length for --compile's verdict")
    ap.add_argument("--steps-per-epoch", type=int, default=5)
    ap.add_argument("--selection", metavar="RUN", help="only compare TopK selections of RUN")
    args = ap.parse_args()
    if args.selection:
        compare_selection(args.selection)
        return
    gen = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(args.batch, 3, args.size, args.size, generator=gen),
            torch.randn(args.batch, 1, generator=gen),
        )
        for _ in range(args.n_batches)
    ]
    default = choose_precision("cpu")
    print(f"default precision: {default.name} ({default.reason})")
    print(f"batch={args.batch} size={args.size} threads={torch.get_num_threads()} reps={args.reps}")
    if args.compile:
        bench_compile(default, batches, args)
        return
    train = {
        "bare_fp32": make_train_step(make_model(True, SETTINGS["fp32"]), SETTINGS["fp32"], batches)
    }
    for name, prec in {**SETTINGS, "default": default}.items():
        train[name] = make_train_step(make_model(False, prec), prec, batches)
    med = interleaved(train, args.warmup, args.reps)
    for name, s in med.items():
        print(f"train_step_s[{name}]={s:.4f} speedup_vs_fp32_bare={med['bare_fp32'] / s:.3f}")
    infer = {
        name: make_infer_step(make_model(False, p), p, batches)
        for name, p in (("fp32", SETTINGS["fp32"]), ("default", default))
    }
    imed = interleaved(infer, args.warmup, args.reps)
    n = args.batch * args.n_batches
    for name, s in imed.items():
        print(f"inference_images_per_s[{name}]={n / s:.1f}")
    print(f"inference_speedup_vs_fp32={imed['fp32'] / imed['default']:.3f}")
    print(f"cpu_speedup_vs_fp32_bare={med['bare_fp32'] / med['default']:.3f}")


if __name__ == "__main__":
    main()
