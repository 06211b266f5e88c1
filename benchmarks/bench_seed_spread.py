"""Seed-to-seed spread of the final validation RMSE: N seeds x configurations on one dataset.

Every configuration is trained with every ``--seeds`` seed (weight init, shuffling, flips) and
every ``--split-seeds`` split seed (which galaxies are validated: five split seeds give five
different random 80/20 splits, so a figure is not tuned to one validation set). Per
configuration it prints the mean, standard deviation (ddof 1) and worst final validation RMSE,
the largest validation RMSE after epoch 1, and the largest change over the last five epochs.

A configuration is ``NAME:FIELD=VALUE,FIELD=VALUE`` with fields of ``[train]`` or ``[model]``
(``recipe``, ``amp``, ``channels_last``, ``k``, ``bn_recompute``, ...), e.g.::

    python benchmarks/bench_seed_spread.py DATA --seeds 0 1 2 3 4 5 6 7 \\
        --config stable:recipe=stable --config paper:recipe=paper \\
        --config fp32:amp=false,channels_last=false --size 64 --epochs 20 --out spread.jsonl

Finished runs are appended to ``--out`` (JSON lines) and skipped when the command is rerun, so
a long sweep can be split over several invocations; ``--report-only`` prints the table from it.
Runs are sequential, in this process (``OMP_NUM_THREADS`` decides its threads).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from sfnet.config import ModelConfig, RunConfig, TrainConfig
from sfnet.data.dataset import load_dataset
from sfnet.train import fit


def parse_config(text: str) -> tuple[str, dict[str, object]]:
    """``NAME:FIELD=VALUE,...`` -> (name, {field: value}); values parsed as TOML scalars."""
    import tomllib

    name, _, rest = text.partition(":")
    fields: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            fields[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            fields[key] = value  # a bare word: a string
    return name, fields


def make_config(args: argparse.Namespace, fields: dict, seed: int, split_seed: int) -> RunConfig:
    cfg = RunConfig()
    cfg.data.path = str(Path(args.data).resolve())
    cfg.data.target = args.target
    cfg.data.resize, cfg.data.crop = args.size, args.size
    cfg.data.split_seed = split_seed
    cfg.model.k = None if args.k == "none" else int(args.k)
    cfg.train.epochs = args.epochs
    cfg.train.seed = seed
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in fields.items():
        if key == "k":
            cfg.model.k = None if value == "none" else value
        elif key in model_fields:
            setattr(cfg.model, key, value)
        elif key in train_fields:
            setattr(cfg.train, key, value)
        else:
            raise SystemExit(f"unknown field {key!r}")
    cfg.validate()
    return cfg


def summarize(records: list[dict]) -> dict[str, float]:
    """mean / std / worst final val RMSE, max val RMSE after epoch 1, max last-5 movement."""
    finals = [r["val"][-1] for r in records]
    after1 = max(max(r["val"][1:], default=0.0) for r in records)
    moves = [max(r["val"][-5:]) - min(r["val"][-5:]) for r in records]
    return {
        "n": len(finals),
        "mean": statistics.fmean(finals),
        "std": statistics.stdev(finals) if len(finals) > 1 else float("nan"),
        "worst": max(finals),
        "max_after_epoch1": after1,
        "max_last5_move": max(moves),
        "seconds_per_run": statistics.fmean(r["seconds"] for r in records),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="dataset folder or .npz")
    ap.add_argument("--config", action="append", default=[], help="NAME:FIELD=VALUE,...")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--split-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--target", default="metallicity")
    ap.add_argument("--k", default="2", help="k, or none for the dense baseline")
    ap.add_argument("--size", type=int, default=64, help="resize and crop side (px)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("seed_spread.jsonl"))
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    configs = dict(parse_config(c) for c in args.config or ["default:"])

    done: dict[tuple, dict] = {}
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done[(r["config"], r["k"], r["seed"], r["split_seed"])] = r
    data = None
    if not args.report_only:
        for name, fields in configs.items():
            for split_seed in args.split_seeds:
                for seed in args.seeds:
                    key = (name, args.k, seed, split_seed)
                    if key in done:
                        continue
                    cfg = make_config(args, fields, seed, split_seed)
                    if data is None:
                        data = load_dataset(cfg.data)
                    t0 = time.perf_counter()
                    with tempfile.TemporaryDirectory() as tmp:
                        res = fit(cfg, Path(tmp) / "run", data=data)
                    target = next(iter(res.val_rmse))
                    rec = {
                        "config": name,
                        "k": args.k,
                        "seed": seed,
                        "split_seed": split_seed,
                        "fields": fields,
                        "val": [h["val_rmse"][target] for h in res.history],
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                    done[key] = rec
                    with args.out.open("a") as f:
                        f.write(json.dumps(rec) + "\n")
                    print(f"{name} k={args.k} seed {seed} split {split_seed}: "
                          f"{rec['val'][-1]:.4f} ({rec['seconds']} s)", flush=True)  # fmt: skip

    print(f"\nk={args.k}, {args.size} px, {args.epochs} epochs (val RMSE, dex)")
    print("| configuration | runs | mean | std | worst | max after epoch 1 | max last-5 move |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in configs:
        recs = [r for (n, k, *_), r in done.items() if n == name and k == args.k]
        if not recs:
            continue
        s = summarize(recs)
        print(
            f"| {name} | {s['n']} | {s['mean']:.4f} | {s['std']:.4f} | {s['worst']:.4f} | "
            f"{s['max_after_epoch1']:.4g} | {s['max_last5_move']:.4f} |"
        )


if __name__ == "__main__":
    main()
