"""``sfnet demo``: the whole pipeline on the built-in synthetic survey, in minutes on a CPU.

Synthesizes the default survey once (cached in ``ROOT/data``; reused while its settings match),
trains an SFNet on ``bpt_lines`` (k=4) and on ``metallicity`` (k=4, as both paper models) into ``ROOT/runs/``, and
compares each model's validation RMSE with predicting the training mean and with the oracle
(gradient boosting on the true latent factors, same validation galaxies). The numbers are
saved to ``ROOT/demo.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfnet.config import (
    DEVICES,
    MAX_SEED,
    MIN_CROP,
    TARGETS,
    ConfigError,
    check_fields,
    check_value,
    setting,
)
from sfnet.data.synthetic import SynthConfig
from sfnet.io import atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Sizes of the demo (chosen so the whole demo takes about 10 min on 2 CPU cores).

    Measured with these defaults (2026-12-02, both models k = 4, the default stable recipe, fp32
    + channels-last on an idle 2-core AVX2 CPU): 10 min 18 s in all (synthesis 20 s, bpt_lines
    ~25 s per epoch, metallicity ~22 s per epoch at crop 48 px),
    validation RMSE (model / predict-the-mean / oracle, dex): log [NII] 0.197 / 0.370 / 0.124,
    log Halpha 0.163 / 0.352 / 0.061, log [OIII] 0.296 / 0.480 / 0.210, log Hbeta 0.160 /
    0.357 / 0.075, oh_p50 0.111 / 0.176 / 0.099. (On an AVX512-BF16 CPU in bf16: 4 min 10 s.)

    Each field is a :func:`~sfnet.config.setting` (its help says what it is; ``sfnet demo``'s
    options are generated from them). ``n``: about 63 % of the galaxies pass the bpt_lines
    cuts, 47 % metallicity; 80 % of those train, 20 % validate.
    """

    root: Path = setting(
        Path("demo-output"), "folder for the survey (data/), the runs (runs/) and demo.json"
    )
    # the survey: `sfnet synth`'s defaults (SynthConfig)
    n: int = setting(SynthConfig.n, "galaxies in the synthetic survey", ge=1)
    size: int = setting(
        SynthConfig.size, "rendered image side in pixels (0.262 arcsec/px)", ge=MIN_CROP
    )
    seed: int = setting(SynthConfig.seed, "survey seed", ge=0, le=MAX_SEED)
    crop: int = setting(48, "centre crop fed to the network, pixels", ge=MIN_CROP)
    epochs: int = setting(12, "training epochs per run", ge=1)
    batch_size: int = setting(64, "galaxies per step", ge=2)
    lr: float = setting(0.1, "peak learning rate (Ranger, flat + cosine)", gt=0.0)
    runs: tuple[tuple[str, int], ...] = setting(
        (("bpt_lines", 4), ("metallicity", 4)), "(target, k) pairs to train", cli=False
    )
    workers: int | None = setting(None, "rendering processes (none: all cores)", ge=1)
    device: str = setting(
        "auto",
        "where the models train and run: auto (CUDA when present), cpu or cuda",
        choices=DEVICES,
    )

    def validate(self) -> None:
        check_fields(self, "demo", skip=("runs",))
        for target, k in self.runs:
            check_value("demo.runs", target, str, {"choices": TARGETS})
            check_value("demo.runs", k, int, {"ge": 1, "le": 511})
        if self.crop > self.size:
            raise ConfigError(f"demo.crop ({self.crop}) must be <= demo.size ({self.size})")

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


def _ensure_survey(cfg: DemoConfig, progress: bool, seconds: dict[str, float]) -> Path:
    """The synthetic survey in ``cfg.data_dir``: reused while its settings match, else drawn."""
    from sfnet.data import synthetic

    data_dir = cfg.data_dir
    if synthetic.is_complete(data_dir, cfg.n, cfg.size, cfg.seed):
        log.info("using the cached synthetic survey %s (%d galaxies)", data_dir, cfg.n)
        return data_dir
    log.info("synthesizing %d galaxies (%d px) into %s ...", cfg.n, cfg.size, data_dir)
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
    log.info("  done in %.0f s", seconds["synth"])
    return data_dir


def _run_config(cfg: DemoConfig, target: str, k: int):
    """The RunConfig of the demo's ``target`` run with ``k`` features."""
    from sfnet.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    return RunConfig(
        data=DataConfig(path=str(cfg.data_dir.resolve()), target=target, crop=cfg.crop),
        model=ModelConfig(k=k),
        train=TrainConfig(
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, device=cfg.device
        ),
    )


def _log_epoch(r: dict) -> None:
    rmse = ", ".join(f"{n} {v:.3f}" for n, v in r["val_rmse"].items())
    log.info("  epoch %d: val RMSE %s (%.0f s)", r["epoch"], rmse, r["seconds"])


def _train(cfg: DemoConfig, run_cfg: Any, progress: bool, overwrite: bool):
    """Train (or resume, or reuse) one demo run; returns (fit result, its galaxies)."""
    from sfnet.data.dataset import load_dataset
    from sfnet.train import fit

    target, k = run_cfg.data.target, run_cfg.model.k
    run_dir = cfg.run_dir(target, k)
    retrain = overwrite or _settings_changed(run_dir, run_cfg)
    log.info("training SFNet k=%d on %s (%d epochs) -> %s", k, target, cfg.epochs, run_dir)
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
        on_epoch=_log_epoch,
    )
    return result, data


def _scores(run_cfg: Any, result: Any, data: Any) -> list[TargetScore]:
    """The run's validation RMSE beside predicting the mean and the oracle (same split)."""
    from sfnet.analysis.oracle import oracle_scores

    dcfg, target = run_cfg.data, run_cfg.data.target
    orc = oracle_scores(data.catalog, target, seed=dcfg.split_seed, val_fraction=dcfg.val_fraction)
    return [
        TargetScore(target, name, float(result.val_rmse[name]), orc.mean[name], orc.oracle[name])
        for name in orc.oracle
    ]


def _write_summary(cfg: DemoConfig, res: DemoResult) -> None:
    """``ROOT/demo.json``: the settings, the folders, the scores and the timings."""
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}
    atomic_write_json(
        Path(cfg.root) / "demo.json",
        {
            "config": config,
            "data": str(res.data_dir),
            "runs": [str(p) for p in res.run_dirs],
            "reports": [str(p) for p in res.reports],
            "scores": [dataclasses.asdict(s) for s in res.scores],
            "seconds": res.seconds,
        },
    )


def _log_summary(cfg: DemoConfig, res: DemoResult) -> None:
    log.info("")
    log.info("validation RMSE (dex)        model   predict-mean   oracle (true factors)")
    for s in res.scores:
        log.info(f"  {s.name:<24} {s.model:7.3f}   {s.mean:12.3f}   {s.oracle:8.3f}")
    log.info("")
    log.info("data:  %s", res.data_dir)
    for p in res.run_dirs:
        log.info("run:   %s", p)
    for p in res.reports:
        log.info("feature atlas (open in a browser): %s", p)
    total = res.seconds["total"]
    log.info("summary: %s   (total %.0f s)", Path(cfg.root) / "demo.json", total)


def run_demo(
    cfg: DemoConfig | None = None,
    *,
    progress: bool = False,
    overwrite: bool = False,
) -> DemoResult:
    """Run the demo (see module docstring); each step is logged (logger ``sfnet.workflows.demo``, INFO)."""
    cfg = cfg or DemoConfig()
    cfg.validate()
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    res = DemoResult(_ensure_survey(cfg, progress, seconds), [], [], seconds, [])
    for target, k in cfg.runs:
        run_cfg = _run_config(cfg, target, k)
        t0 = time.perf_counter()
        result, data = _train(cfg, run_cfg, progress, overwrite)
        seconds[f"train_{target}"] = time.perf_counter() - t0
        res.scores += _scores(run_cfg, result, data)
        t0 = time.perf_counter()
        res.reports.append(_analyze(result.run_dir, progress, cfg.device))
        seconds[f"analyze_{target}"] = time.perf_counter() - t0
        log.info("  feature atlas: %s (%.0f s)", res.reports[-1], seconds[f"analyze_{target}"])
        res.run_dirs.append(result.run_dir)
    seconds["total"] = time.perf_counter() - t_start
    _write_summary(cfg, res)
    _log_summary(cfg, res)
    return res


def _settings_changed(run_dir: Path, run_cfg) -> bool:
    """True when ``run_dir`` holds a run trained with other settings (it is then retrained)."""
    from sfnet.config import RunConfig
    from sfnet.errors import UserError
    from sfnet.runs import CONFIG, same_config

    stored = Path(run_dir) / CONFIG
    if not stored.is_file():
        return False
    try:
        return not same_config(RunConfig.load(stored), run_cfg)
    except UserError:
        return True


def _analyze(run_dir: Path, progress: bool = False, device: str = "auto") -> Path:
    """Analyse one finished demo run (activations, equations, figures, ground truth) and write
    its feature atlas; returns the path of ``report.html``."""
    from sfnet.runs import default_device
    from sfnet.workflows.analyze import write_report

    return write_report(run_dir, progress=progress, device=default_device(device))
