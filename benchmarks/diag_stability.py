"""Diagnosis of the epoch-to-epoch instability of validation RMSE (issue 17).

One training per seed with the recipe given by the options (``--recipe paper`` = today's); at
every epoch end, besides the validation RMSE the run itself records (the fast weights with the
running batch-norm statistics), the same validation split is scored with

- ``bn``: batch-norm statistics recomputed on (at most ``--bn-cap`` galaxies of) the training
  split (:func:`sfnet.train.recompute_bn`, an ``update_bn`` equivalent);
- ``slow``: Lookahead's slow weights, with the running statistics;
- ``slow+bn``: the slow weights with recomputed statistics;
- ``ema+bn``: an exponential moving average of the fast weights over ``--ema-epochs`` epochs
  (:class:`sfnet.train.WeightAverage`, updated after every step), recomputed statistics.

The variants are scored on copies of the model: the training itself is unchanged. Prints one
table per seed and writes ``--out`` (JSON lines, one per seed and epoch).

    python benchmarks/diag_stability.py DATA --seeds 0 1 2 --epochs 20 --out diag.jsonl
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import sfnet.train as T
from sfnet.config import RunConfig
from sfnet.data.dataset import load_dataset

#: The unpatched validation (``main`` wraps ``T._validate`` to score the variants each epoch).
_VALIDATE = T._validate


def _score(tr: T.Trainer, model: torch.nn.Module) -> float:
    return float(_VALIDATE(tr, model)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--k", default="2")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--bn-cap", type=int, default=1024)
    ap.add_argument("--ema-epochs", type=float, default=1.0)
    ap.add_argument("--recipe", default="paper")
    ap.add_argument("--amp", default=None, help="true/false (unset: the default precision)")
    ap.add_argument("--channels-last", default=None)
    ap.add_argument("--out", type=Path, default=Path("diag_stability.jsonl"))
    args = ap.parse_args()

    cfg = RunConfig()
    cfg.data.path = args.data
    cfg.data.target = "metallicity"
    cfg.data.resize = args.size
    cfg.data.crop = args.size
    cfg.model.k = None if args.k == "none" else int(args.k)
    cfg.train.epochs = args.epochs
    if hasattr(cfg.train, "recipe"):
        cfg.train.recipe = args.recipe
    for name in ("amp", "channels_last"):
        v = getattr(args, name)
        if v is not None:
            setattr(cfg.train, name, v.lower() == "true")
    cfg.validate()
    data = load_dataset(dataclasses.replace(cfg.data, path=str(Path(args.data).resolve())))

    original = _VALIDATE
    original_build = T._build
    averages: dict[int, T.WeightAverage] = {}

    def build(*a, **kw) -> T.Trainer:
        """The run's trainer, plus a weight average updated after every optimizer step."""
        tr = original_build(*a, **kw)
        avg = averages[tr.config.train.seed] = T.WeightAverage(
            tr.model, args.ema_epochs * tr.steps_per_epoch
        )
        step = tr.opt.step  # (Lookahead's state_dict holds no instance attributes)

        def step_and_average() -> None:
            step()
            avg.update(tr.model)

        tr.opt.step = step_and_average
        return tr

    rows: list[dict] = []

    def validate(tr: T.Trainer, model: torch.nn.Module | None = None) -> np.ndarray:
        run = original(tr, model)
        sample = T.bn_sample(tr.train_idx, args.bn_cap, tr.config.train.seed)
        t0 = time.perf_counter()
        bn = copy.deepcopy(tr.model)
        T.recompute_bn(bn, tr.data.images, sample, tr.local_batch, tr.norm, tr.precision, tr.device)
        t_bn = time.perf_counter() - t0
        slow = copy.deepcopy(tr.model)
        with torch.no_grad():
            for p, s in zip(slow.parameters(), (s for g in tr.opt.slow for s in g), strict=True):
                p.copy_(s)
        slow_bn = copy.deepcopy(slow)
        T.recompute_bn(
            slow_bn, tr.data.images, sample, tr.local_batch, tr.norm, tr.precision, tr.device
        )
        ema_bn = copy.deepcopy(tr.model)
        with torch.no_grad():
            for p, a in zip(
                ema_bn.parameters(), averages[tr.config.train.seed].params, strict=True
            ):
                p.copy_(a)
        T.recompute_bn(
            ema_bn, tr.data.images, sample, tr.local_batch, tr.norm, tr.precision, tr.device
        )
        rec = {
            "seed": tr.config.train.seed,
            "epoch": len(rows_by_seed.setdefault(tr.config.train.seed, [])) + 1,
            "running": float(run[0]),
            "bn": _score(tr, bn),
            "slow": _score(tr, slow),
            "slow+bn": _score(tr, slow_bn),
            "ema+bn": _score(tr, ema_bn),
            "lr": float(tr.sched.get_last_lr()[0]),
            "bn_seconds": round(t_bn, 3),
            "bn_rows": int(len(sample)),
        }
        rows_by_seed[tr.config.train.seed].append(rec)
        rows.append(rec)
        with args.out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(
            f"seed {rec['seed']} epoch {rec['epoch']:2d}  running {rec['running']:.4g}  "
            f"bn {rec['bn']:.4g}  slow {rec['slow']:.4g}  slow+bn {rec['slow+bn']:.4g}  "
            f"ema+bn {rec['ema+bn']:.4g}  "
            f"lr {rec['lr']:.3g}  ({t_bn:.2f} s recompute)",
            flush=True,
        )
        return run

    rows_by_seed: dict[int, list] = {}
    T._validate = validate
    T._build = build
    for seed in args.seeds:
        c = copy.deepcopy(cfg)
        c.train.seed = seed
        with tempfile.TemporaryDirectory() as tmp:
            T.fit(c, Path(tmp) / "run", data=data)


if __name__ == "__main__":
    main()
