"""``sfnet demo``: the whole pipeline on the built-in synthetic survey, in minutes on a CPU.

Synthesizes the default survey once (cached in ``ROOT/data``; reused while its settings match),
trains an SFNet on ``bpt_lines`` (k=4) and on ``metallicity`` (k=4, as both paper models) into ``ROOT/runs/``, and
compares each model's validation RMSE with predicting the training mean and with the oracle
(gradient boosting on the true latent factors, same validation galaxies). The numbers are
saved to ``ROOT/demo.json``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sfnet.io import atomic_write_json


@dataclass
class DemoConfig:
    """Sizes of the demo (chosen so the whole demo takes <= 10 min on 2 CPU cores).

    Measured with these defaults on 2 otherwise idle CPU cores: 5.5 min in all (synthesis 14 s,
    bpt_lines ~14 s per epoch, metallicity ~10 s per epoch at crop 48 px), validation RMSE
    (model / predict-the-mean / oracle, dex): log [NII] 0.198 / 0.370 / 0.124, log Halpha
    0.156 / 0.352 / 0.061, log [OIII] 0.280 / 0.480 / 0.210, log Hbeta 0.157 / 0.357 / 0.075,
    oh_p50 0.110 / 0.176 / 0.099.

    Attributes:
        root: folder holding ``data/`` (the survey), ``runs/`` and ``demo.json``.
        n: galaxies in the survey (about 63 % pass the bpt_lines cuts, 47 % metallicity;
            80 % of those train, 20 % validate).
        size: rendered image side (pixels, 0.262"/px).
        seed: survey seed.
        crop: centre crop fed to the network (pixels).
        epochs: training epochs per run.
        batch_size: galaxies per step.
        lr: peak learning rate (Ranger, flat + cosine).
        runs: (target, k) pairs to train.
        workers: rendering processes (None: all cores).
    """

    root: Path = Path("demo-output")
    n: int = 6000
    size: int = 64
    seed: int = 0
    crop: int = 48
    epochs: int = 12
    batch_size: int = 64
    lr: float = 0.1
    runs: tuple[tuple[str, int], ...] = (("bpt_lines", 4), ("metallicity", 4))
    workers: int | None = None

    @property
    def data_dir(self) -> Path:
        return Path(self.root) / "data"

    def run_dir(self, target: str, k: int) -> Path:
        return Path(self.root) / "runs" / f"{target}-k{k}"


@dataclass
class TargetScore:
    """Validation RMSE of one target (physical units: dex)."""

    target: str
    name: str
    model: float
    mean: float
    oracle: float


@dataclass
class DemoResult:
    """What the demo produced: where, how good, how long (seconds)."""

    data_dir: Path
    run_dirs: list[Path]
    scores: list[TargetScore]
    seconds: dict[str, float] = field(default_factory=dict)
    reports: list[Path] = field(default_factory=list)


def run_demo(
    cfg: DemoConfig | None = None,
    *,
    progress: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the demo (see module docstring); ``log`` receives one line per step."""
    from sfnet.analysis.oracle import oracle_report
    from sfnet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from sfnet.data import synthetic
    from sfnet.data.dataset import load_dataset
    from sfnet.train import fit

    cfg = cfg or DemoConfig()
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}

    data_dir = cfg.data_dir
    if synthetic.is_complete(data_dir, cfg.n, cfg.size, cfg.seed):
        say(f"using the cached synthetic survey {data_dir} ({cfg.n} galaxies)")
    else:
        say(f"synthesizing {cfg.n} galaxies ({cfg.size} px) into {data_dir} ...")
        t0 = time.perf_counter()
        synthetic.synthesize(
            data_dir,
            cfg.n,
            size=cfg.size,
            seed=cfg.seed,
            workers=cfg.workers,
            progress=progress,
            overwrite=True,
        )
        seconds["synth"] = time.perf_counter() - t0
        say(f"  done in {seconds['synth']:.0f} s")

    scores: list[TargetScore] = []
    run_dirs: list[Path] = []
    reports: list[Path] = []
    for target, k in cfg.runs:
        run_cfg = RunConfig(
            data=DataConfig(data=str(data_dir.resolve()), target=target, crop=cfg.crop),
            model=ModelConfig(k=k),
            train=TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr),
        )
        run_dir = cfg.run_dir(target, k)
        retrain = overwrite or _settings_changed(run_dir, run_cfg)
        say(f"training SFNet k={k} on {target} ({cfg.epochs} epochs) -> {run_dir}")
        t0 = time.perf_counter()
        data = load_dataset(run_cfg.data)
        # Decode the images once: every epoch then reads memory, not PNG files.
        data = dataclasses.replace(data, images=np.asarray(data.images[np.arange(len(data))]))
        result = fit(
            run_cfg,
            run_dir,
            overwrite=retrain,
            resume=not retrain,
            progress=progress,
            data=data,
            on_epoch=lambda r: say(
                f"  epoch {r['epoch']}: val RMSE "
                + ", ".join(f"{n} {v:.3f}" for n, v in r["val_rmse"].items())
                + f" ({r['seconds']:.0f} s)"
            ),
        )
        seconds[f"train_{target}"] = time.perf_counter() - t0
        orc = oracle_report(
            data.catalog,
            target,
            seed=run_cfg.data.split_seed,
            val_fraction=run_cfg.data.val_fraction,
        )
        for name in orc.oracle:
            scores.append(
                TargetScore(
                    target, name, float(result.val_rmse[name]), orc.mean[name], orc.oracle[name]
                )
            )
        t0 = time.perf_counter()
        reports.append(_analyze(result.run_dir, progress))
        seconds[f"analyze_{target}"] = time.perf_counter() - t0
        say(f"  feature atlas: {reports[-1]} ({seconds[f'analyze_{target}']:.0f} s)")
        run_dirs.append(result.run_dir)

    seconds["total"] = time.perf_counter() - t_start
    res = DemoResult(data_dir, run_dirs, scores, seconds, reports)
    atomic_write_json(
        Path(cfg.root) / "demo.json",
        {
            "config": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in dataclasses.asdict(cfg).items()
            },
            "data": str(data_dir),
            "runs": [str(p) for p in run_dirs],
            "reports": [str(p) for p in reports],
            "scores": [dataclasses.asdict(s) for s in scores],
            "seconds": seconds,
        },
    )
    say("")
    say("validation RMSE (dex)        model   predict-mean   oracle (true factors)")
    for s in scores:
        say(f"  {s.name:<24} {s.model:7.3f}   {s.mean:12.3f}   {s.oracle:8.3f}")
    say("")
    say(f"data:  {data_dir}")
    for p in run_dirs:
        say(f"run:   {p}")
    for p in reports:
        say(f"feature atlas (open in a browser): {p}")
    say(f"summary: {Path(cfg.root) / 'demo.json'}   (total {seconds['total']:.0f} s)")
    return res


def _settings_changed(run_dir: Path, run_cfg) -> bool:
    """True when ``run_dir`` holds a run trained with other settings (it is then retrained)."""
    from sfnet.config import RunConfig
    from sfnet.errors import UserError

    stored = Path(run_dir) / "config.toml"
    if not stored.is_file():
        return False
    try:
        return RunConfig.load(stored).to_dict() != run_cfg.to_dict()
    except UserError:
        return True


def _analyze(run_dir: Path, progress: bool = False) -> Path:
    """Analyse one finished demo run (activations, equations, figures, ground truth) and write
    its feature atlas; returns the path of ``report.html``."""
    from sfnet.report import write_report

    return write_report(run_dir, progress=progress)
