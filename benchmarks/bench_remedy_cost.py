"""Cost of the stable recipe's evaluation remedies against a training epoch at the paper's scale.

Times, interleaved on the same batches (so machine load affects both alike; medians): one
training step (forward + backward + Ranger step) and one batch-norm recompute batch (forward in
training mode, no gradient, :func:`sfnet.train.recompute_bn`), plus the model copy that
:func:`sfnet.train.eval_model` makes. The recompute runs once per validation and once before
saving on ``bn_recompute`` galaxies; an epoch trains ``n_train`` galaxies. Prints

    overhead_per_epoch = (copy + bn_recompute / batch * recompute batch) / (n_train / batch * step)

and, for ``eval_weights = "ema"``, the weight-average update after every step over the step.

for the paper's 117,223 galaxies (80 % training) and this dataset's size.

    python benchmarks/bench_remedy_cost.py [--size 64] [--batch 64] [--reps 5] [--cap 2048]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch

from sfnet.config import TrainConfig
from sfnet.data.batches import Normalization
from sfnet.model import SparseFeatureNet
from sfnet.optim import ranger
from sfnet.precision import choose_precision
from sfnet.train import WeightAverage, recompute_bn, rmse_loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cap", type=int, default=TrainConfig().bn_recompute)
    ap.add_argument("--n-train", type=int, default=int(0.8 * 117_223))
    args = ap.parse_args()
    torch.manual_seed(0)
    prec = choose_precision("cpu")
    model = prec.model(SparseFeatureNet(2, 1))
    opt = ranger(model.parameters(), TrainConfig())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (args.batch, 3, args.size, args.size), dtype=np.uint8)
    norm = Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    y = torch.randn(args.batch, 1)
    rows = np.arange(args.batch)
    ema = WeightAverage(model, horizon_steps=3 * args.n_train / args.batch)
    step_t, bn_t, copy_t, ema_t = [], [], [], []
    for _ in range(args.reps + 1):  # the first round warms up
        model.train()
        t0 = time.perf_counter()
        x = norm.apply(torch.from_numpy(images))
        with prec.autocast():
            loss = rmse_loss(model(prec.images(x)).predictions, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ema.update(model)  # eval_weights = "ema": after every optimizer step
        ema_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        m = copy.deepcopy(model)
        copy_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        recompute_bn(m, images, rows, args.batch, norm, prec, torch.device("cpu"))
        bn_t.append(time.perf_counter() - t0)
    step, bn, cp, av = (statistics.median(t[1:]) for t in (step_t, bn_t, copy_t, ema_t))
    print(
        f"precision {prec.name}, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads"
    )
    print(
        f"training step {step:.3f} s; recompute batch {bn:.3f} s ({bn / step:.2f} of a step); copy {cp:.3f} s"
    )
    print(
        f"weight-average update {av:.4f} s per step: {av / step:.4f} of a step (eval_weights = ema)"
    )
    for name, n in (("paper scale", args.n_train), ("400-galaxy sample", 320)):
        epoch = n / args.batch * step
        extra = cp + min(args.cap, n) / args.batch * bn
        print(f"{name}: {n} training galaxies, epoch ~{epoch:.1f} s; remedies ~{extra:.2f} s per "
              f"validation: overhead_per_epoch={extra / epoch:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
