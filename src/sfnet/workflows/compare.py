"""``sfnet compare``: reproduce the paper's checks on any dataset, in one comparison folder.

``FOLDER/``
  ``compare.toml``            the :class:`CompareConfig` used (rewritten on each call)
  ``runs/<target>_k<k>_r<r>`` SFNet runs of the k sweep (repeat r trains with seed ``seed + r``)
  ``runs/<target>_dense``     the dense CNN (k = None) of each target group
  ``configs/*.toml``          run configs handed to ``torchrun`` (``launcher = "torchrun"``)
  ``sweep_runs.csv``          validation RMSE of every run, per target and per group
  ``table_rmse.csv/.md``      the paper's Table 2: k | SFNet mean ± s.e. | PCA, per group
  ``pca_variance.csv``        variance explained by the top 8 PCs of the dense features
  ``agn.csv``                 linear-SVM AGN accuracy/F1, top features vs all active features
  ``probes.csv``              linear/XGBoost probes from other features to the targets
  ``probe_sfnet_features.csv`` ridge R^2 from other features to each frequent SFNet feature
  ``sae/<target>_k<k>_r<r>``  the SAE-k baselines (post-hoc TopK sparse autoencoders on the
                              dense features, :mod:`sfnet.workflows.sparsity`)
  ``sae_runs.csv``            validation RMSE of a ridge fit on each SAE's k-sparse codes
  ``interpretability.csv/.md`` method x k x score (best |rho|, margin, DCI, MIG) against the
                              true factors (synthetic) or, on real data, the numeric catalog
                              columns beyond the target plus quantities measured on the cutouts
                              (``img_*``, :mod:`sfnet.analysis.photometry`)
  ``factors.csv``             per target group: what its units were scored against (none: said)
  ``atlas.html``              (unless ``atlas`` is off, as with ``--quick``) links to the
                              feature atlases of both kinds of sparsity at the analysed k: ``runs/<target>_k<k>_r0/report.html`` (SFNet) and
                              ``sae/<target>_k<k>_r0/report.html`` (the SAE's latents)
  ``rmse_vs_k.png``           the paper's Figure 5 (SFNet mean ± s.e., PCA and SAE vs k)
  ``comparison.md``           all tables in one page

Seeded and resumable: every run has a fixed seed on the same split; finished runs are reused
(their config must match), unfinished ones are resumed from their checkpoint.
"""

from __future__ import annotations

import copy
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfnet.analysis.agn import agn_comparison, agn_labels
from sfnet.analysis.metrics import group_rmse
from sfnet.analysis.pca import pca_regression
from sfnet.analysis.probes import load_feature_table, probe_targets, ridge_r2
from sfnet.config import (
    DENSE_SEED_OFFSET,
    LAUNCHERS,
    QUICK,
    TARGETS,
    CompareConfig,
    RunConfig,
    TrainConfig,
    load_toml,
)
from sfnet.data.dataset import load_dataset
from sfnet.errors import DataError, RunFolderError
from sfnet.io import atomic_write, atomic_write_bytes
from sfnet.outputs.tables import format_number, markdown_table, write_csv
from sfnet.physics import BPT_LINES
from sfnet.runs import CONFIG, HARDWARE_FIELDS, final_val_rmse, same_config

log = logging.getLogger(__name__)

#: The paper's k for each target group (the run whose features are interpreted and probed):
#: both published models use k = 4; "two features Z61 and Z256" are the top-2 of that model.
PAPER_K = {"metallicity": 4, "bpt_lines": 4}
GROUP_TITLES = {"metallicity": "Metallicity", "bpt_lines": "Spectral lines"}


def _targets_in(table: pd.DataFrame) -> list[str]:
    """The targets of a comparison table: the presets first (paper order), then any
    catalog-column targets in the order they appear."""
    present = list(dict.fromkeys(table["target"]))
    return [t for t in TARGETS if t in present] + [t for t in present if t not in TARGETS]


def _rmse_label(target: str) -> str:
    """``validation RMSE [dex]``: the targets' shared unit, or none when they differ."""
    from sfnet.data.catalog import target_units

    if target == "bpt_lines":
        return "validation RMSE [dex, log flux]"
    units = set(target_units(target).values())
    return "validation RMSE" + (f" [{units.pop()}]" if len(units) == 1 and "" not in units else "")


@dataclass
class RunSpec:
    """One training of the comparison."""

    name: str
    target: str
    k: int | None
    repeat: int
    config: RunConfig


def plan_runs(cfg: CompareConfig) -> list[RunSpec]:
    """Every training of the comparison, repeat by repeat (so a sweep stopped early has whole
    repeats of every k and target): repeat 0 starts with each target's dense run."""
    specs = []
    for r in range(cfg.repeats):
        for target in cfg.targets:
            if r == 0:
                specs.append(
                    RunSpec(f"{target}_dense", target, None, 0, cfg.run_config(None, 0, target))
                )
            for k in cfg.ks:
                specs.append(
                    RunSpec(f"{target}_k{k}_r{r}", target, int(k), r, cfg.run_config(k, r, target))
                )
    return specs


def torchrun_command(
    config_path: Path, run_dir: Path, nproc: int, resume: bool = False
) -> list[str]:
    """The command that trains one run under torchrun (single node, ``nproc`` processes).

    Uses ``python -m torch.distributed.run`` of the current interpreter (the ``torchrun``
    entry point, guaranteed to run in the same environment). A fresh run is
    ``sfnet train --config CONFIG --out RUN``; a killed one is ``sfnet train --resume RUN``
    (its stored config).
    """
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={int(nproc)}",
        "-m",
        "sfnet",
        "train",
        "--no-progress",
    ]
    if resume:
        return [*cmd, "--resume", str(run_dir)]
    return [*cmd, "--config", str(config_path), "--out", str(run_dir)]


def _check_same_config(spec: RunSpec, run_dir: Path) -> RunConfig | None:
    """The config to continue an existing run folder with (None if it has none).

    Compares the stored TOML with the requested config, hardware fields aside (raw TOML);
    refuses a different one.
    """
    saved = run_dir / CONFIG
    if not saved.is_file():
        return None
    stored = load_toml(saved)
    if not same_config(stored, spec.config, ignore_train=HARDWARE_FIELDS):
        raise RunFolderError(
            f"{run_dir}: exists with different settings than this comparison asks for "
            "(data, k, epochs, seed, ...); use a new comparison folder"
        )
    cfg = copy.deepcopy(spec.config)
    defaults = TrainConfig()
    for f in HARDWARE_FIELDS:  # continue with the hardware settings it started with
        setattr(cfg.train, f, stored.get("train", {}).get(f, getattr(defaults, f)))
    return cfg


def ensure_run(
    spec: RunSpec,
    folder: Path,
    cfg: CompareConfig,
    *,
    data: Any = None,
    progress: bool = False,
    runner: Callable[[list[str]], int] | None = None,
) -> tuple[Path, bool]:
    """Train ``spec`` unless its run folder is already finished; resume a killed one.

    Args:
        spec: the run.
        folder: the comparison folder (the run goes to ``folder/runs/<name>``).
        cfg: the comparison settings (launcher, nproc).
        data: the already-loaded galaxies of ``spec``'s target (in-process training only).
        progress: tqdm bars during in-process training.
        runner: runs a command list, returns its exit code (default: subprocess).

    Returns:
        (run folder, whether it was reused as finished).
    """
    from sfnet.runs import is_finished

    run_dir = folder / "runs" / spec.name
    stored = _check_same_config(spec, run_dir)
    if is_finished(run_dir):
        return run_dir, True
    if cfg.launcher == "torchrun":
        cfg_path = folder / "configs" / f"{spec.name}.toml"
        spec.config.save(cfg_path)
        if stored is None and run_dir.exists():
            shutil.rmtree(run_dir)  # killed before it wrote its config: nothing to keep
        cmd = torchrun_command(cfg_path, run_dir, cfg.nproc, resume=stored is not None)
        rc = (runner or _run_subprocess)(cmd)
        if rc != 0:
            raise RunFolderError(
                f"{run_dir}: torchrun training failed (exit {rc}): {' '.join(cmd)}"
            )
    else:
        from sfnet.train import fit

        if stored is None and run_dir.exists():
            shutil.rmtree(run_dir)
        fit(stored or spec.config, run_dir, resume=True, progress=progress, data=data)
    if not is_finished(run_dir):
        raise RunFolderError(f"{run_dir}: training ended but the run is not finished")
    return run_dir, False


def _run_subprocess(cmd: list[str]) -> int:
    return subprocess.run(cmd, check=False).returncode


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (std with ddof=1 / sqrt(n); NaN for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))


@dataclass
class CompareResult:
    """Tables of a comparison (all also written to the folder)."""

    folder: Path
    sweep: pd.DataFrame
    table: pd.DataFrame
    pca_variance: pd.DataFrame
    agn: pd.DataFrame
    probes: pd.DataFrame
    probe_features: pd.DataFrame
    reused: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    sae: pd.DataFrame = field(default_factory=pd.DataFrame)
    interpretability: pd.DataFrame = field(default_factory=pd.DataFrame)
    factors: pd.DataFrame = field(default_factory=pd.DataFrame)


def sweep_table(sweep: pd.DataFrame, pca: pd.DataFrame) -> pd.DataFrame:
    """Summary per (target, k): SFNet mean, s.e. and repeats of the group RMSE; PCA RMSE.

    Args:
        sweep: one row per run with columns target, k, repeat, group_rmse (sparse runs only).
        pca: columns target, k, pca_rmse.
    """
    rows = []
    for (target, k), g in sweep.groupby(["target", "k"], sort=True):
        m, se = mean_se(g["group_rmse"].to_numpy())
        rows.append(
            {"target": target, "k": int(k), "sfnet_mean": m, "sfnet_se": se, "repeats": len(g)}
        )
    out = pd.DataFrame(rows, columns=["target", "k", "sfnet_mean", "sfnet_se", "repeats"])
    return out.merge(pca, on=["target", "k"], how="left")


def rmse_table_markdown(table: pd.DataFrame) -> str:
    """The paper's Table 2 layout: k | SFNet mean ± s.e. | PCA, for each target group."""
    targets = _targets_in(table)
    sae = "sae_mean" in table.columns  # the SAE-k column (issue 22)
    methods = ("SFNet", "PCA", "SAE") if sae else ("SFNet", "PCA")
    header = ["k"] + [f"{GROUP_TITLES.get(t, t)} {m}" for t in targets for m in methods]
    rows = []
    for k in sorted(set(table["k"])):
        cells = [str(k)]
        for t in targets:
            row = table[(table["target"] == t) & (table["k"] == k)]
            if row.empty:
                cells += [""] * len(methods)
                continue
            r = row.iloc[0]
            sf = format_number(r["sfnet_mean"])
            if np.isfinite(r["sfnet_se"]):
                sf += f" ± {format_number(r['sfnet_se'])}"
            cells += [sf, format_number(r["pca_rmse"])]
            if sae:
                cells.append(_mean_se_cell(r["sae_mean"], r["sae_se"]))
        rows.append(cells)
    return "\n".join(markdown_table(header, rows)) + "\n"


def _mean_se_cell(m: float, se: float) -> str:
    cell = format_number(m)
    return cell + (f" ± {format_number(se)}" if np.isfinite(m) and np.isfinite(se) else "")


def _df_markdown(df: pd.DataFrame, nd: int = 4) -> str:
    if df.empty:
        return "(none)\n"
    rows = [
        [format_number(v, f".{nd}f") if isinstance(v, float | np.floating) else v for v in r]
        for _, r in df.iterrows()  # rows as Series: mixed int/float rows print as floats
    ]
    return "\n".join(markdown_table(list(df.columns), rows)) + "\n"


def plot_rmse_vs_k(table: pd.DataFrame, path: Path) -> None:
    """The paper's Figure 5: RMSE vs k, SFNet mean ± s.e. and PCA, one panel per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = _targets_in(table)
    fig, axes = plt.subplots(1, len(targets), figsize=(4.5 * len(targets), 3.6), squeeze=False)
    for ax, t in zip(axes[0], targets, strict=True):
        g = table[table["target"] == t].sort_values("k")
        se = np.nan_to_num(g["sfnet_se"].to_numpy(), nan=0.0)
        ax.errorbar(
            g["k"], g["sfnet_mean"], yerr=se, fmt="o-", color="tab:blue", capsize=3, label="SFNet"
        )
        ax.plot(g["k"], g["pca_rmse"], "s--", color="tab:red", label="dense CNN + PCA")
        if "sae_mean" in g.columns:
            ax.errorbar(
                g["k"],
                g["sae_mean"],
                yerr=np.nan_to_num(g["sae_se"].to_numpy(dtype=float), nan=0.0),
                fmt="^:",
                color="tab:green",
                capsize=3,
                label="dense CNN + SAE (k-sparse codes)",
            )
        ax.set_xlabel("k (active features / PCs / SAE latents)")
        ax.set_ylabel(_rmse_label(t))
        ax.set_title(GROUP_TITLES.get(t, t))
        ax.set_xticks(g["k"])
        ax.legend()
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def _analysis_k(target: str, ks: Sequence[int]) -> int:
    want = PAPER_K.get(target, 4)
    return want if want in ks else min(ks)


@dataclass
class _TargetData:
    """One target group's galaxies and its dense run's pooled features, split as in training."""

    target: str
    dense: Any  # the dense run (sfnet.runs.Run)
    data: Any  # GalaxyData
    feats: np.ndarray  # (N, d) pooled features of the dense CNN
    y: np.ndarray  # (N, T) float64 targets, physical units
    tr: np.ndarray  # training rows
    va: np.ndarray  # validation rows


def _load_target(target: str, folder: Path, device: Any) -> _TargetData:
    from sfnet.predict import pooled_features
    from sfnet.runs import load_run

    dense = load_run(folder / "runs" / f"{target}_dense", device=device)
    data = dense.data()
    tr, va = dense.split(len(data))
    y = np.asarray(data.y, dtype=np.float64)
    return _TargetData(target, dense, data, pooled_features(dense, data.images), y, tr, va)


def _pca_tables(t: _TargetData, ks: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validation RMSE of linear regression on the top-k PCs, and the variance they explain."""
    pca = pca_regression(t.feats[t.tr], t.y[t.tr], t.feats[t.va], t.y[t.va], ks)
    pca_df = pd.DataFrame({"target": t.target, "k": pca.ks, "pca_rmse": pca.group_rmse})
    for j, name in enumerate(t.data.target_names):
        pca_df[f"pca_rmse_{name}"] = pca.rmse[:, j]
    var_df = pd.DataFrame(
        {
            "target": t.target,
            "component": np.arange(1, len(pca.variance_ratio) + 1),
            "variance_ratio": pca.variance_ratio,
            "cumulative": pca.cumulative_variance,
        }
    )
    return pca_df, var_df


def _sparse_strengths(
    sparse: Any, t: _TargetData, passes: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A_f (N, d) of every galaxy, scaled by each feature's maximum over the validation set,
    and f_activated (d,) on the validation set.

    With ``passes`` (a caller's dict, e.g. ``sfnet reproduce``'s), the one forward pass over the
    galaxies also keeps the pooled features: ``passes[run dir] = (objID, Predictions)``, so
    that the caller does not run the model again."""
    from sfnet.analysis.activations import (
        SparseActivations,
        activation_frequency,
        compute_activations,
        feature_max,
        scaled_strength,
    )

    if passes is None:
        acts = compute_activations(sparse, t.data, split="all")  # rows 0..N-1 in dataset order
    else:
        from sfnet.predict import predict

        out = predict(sparse, t.data.images, pooled=True)
        passes[str(Path(sparse.dir).resolve())] = (np.asarray(t.data.objid), out)
        n = len(out.predictions)
        acts = SparseActivations(
            t.data.objid, np.arange(n), out.indices, out.values, int(sparse.meta.d), "all"
        )
    val = acts.subset(t.va)
    strength = scaled_strength(acts, range(acts.d), feature_max(val))
    return strength, activation_frequency(val)


def _agn_table(t: _TargetData, sparse: Any, strength: np.ndarray, cfg: CompareConfig):
    """Linear-SVM AGN classification from the top features vs all active ones (bpt_lines)."""
    from sfnet.analysis.activations import feature_label

    if t.target != "bpt_lines":
        return pd.DataFrame()
    order = [t.data.target_names.index(f"log_{line}") for line in BPT_LINES]
    labels = agn_labels(t.y[:, order])
    tr, va = t.tr, t.va
    res = agn_comparison(
        strength[tr], labels[tr], strength[va], labels[va], n_top=cfg.agn_top, seed=cfg.seed
    )
    return pd.DataFrame(
        [
            {
                "run": sparse.dir.name,
                "features": name,
                "n_features": len(r.features),
                "features_used": " ".join(feature_label(t.target, f) for f in r.features),
                "accuracy": r.accuracy,
                "f1": r.f1,
                "agn_fraction_val": r.agn_fraction_val,
            }
            for name, r in (("top", res["top"]), ("all_active", res["all_active"]))
        ]
    )


def _probe_rows(t: _TargetData, src: str, F: np.ndarray, cfg: CompareConfig) -> list[dict]:
    """Linear/XGBoost probes from the features F to the targets (validation RMSE)."""
    names = t.data.target_names
    pr = probe_targets(
        F[t.tr], t.y[t.tr], F[t.va], t.y[t.va], names, seed=cfg.seed, n_trees=cfg.probe_trees
    )
    rows = []
    for (model, fit_on), r in pr.rmse.items():
        row = {"target": t.target, "source": src, "model": model, "fit_on": fit_on}
        row["rmse"] = float(group_rmse(r))
        row.update({f"rmse_{n}": float(v) for n, v in zip(names, r, strict=True)})
        rows.append(row)
    return rows


def _feature_probe_rows(
    t: _TargetData, src: str, F: np.ndarray, sparse: Any, strength, freq, frequent
) -> list[dict]:
    """Ridge R^2 from the features F to each frequent SFNet feature's A_f (validation)."""
    from sfnet.analysis.activations import feature_label

    if not len(frequent):
        return []
    tr, va = t.tr, t.va
    r2 = ridge_r2(F[tr], strength[tr][:, frequent], F[va], strength[va][:, frequent])
    return [
        {
            "target": t.target,
            "source": src,
            "run": sparse.dir.name,
            "feature": int(f),
            "label": feature_label(t.target, int(f)),
            "f_activated": float(freq[f]),
            "r2": float(v),
        }
        for f, v in zip(frequent, r2, strict=True)
    ]


def analyze_target(
    target: str,
    folder: Path,
    cfg: CompareConfig,
    passes: dict[str, Any] | None = None,
) -> dict[str, pd.DataFrame]:
    """PCA, AGN and probe tables of one target group from its finished runs; the SAE-k
    baseline, interpretability scores and the feature atlases of the analysed k (``passes``:
    see :func:`_sparse_strengths`)."""
    from sfnet.analysis.activations import rank_features
    from sfnet.runs import default_device, load_run
    from sfnet.workflows.analyze import write_report

    device = default_device(cfg.device)
    t = _load_target(target, folder, device)
    pca_df, var_df = _pca_tables(t, cfg.ks)
    # the SFNet interpreted and probed: the paper's k for this group, repeat 0
    k = _analysis_k(target, cfg.ks)
    sparse = load_run(folder / "runs" / f"{target}_k{k}_r0", device=device)
    strength, freq = _sparse_strengths(sparse, t, passes)
    frequent = rank_features(freq, k)
    sources = {f"dense CNN ({t.dense.dir.name})": t.feats}
    if cfg.features:
        sources[f"file {Path(cfg.features).name}"] = load_feature_table(
            Path(cfg.features), t.data.objid
        )
    probe_rows, feat_rows = [], []
    for src, F in sources.items():
        probe_rows += _probe_rows(t, src, F, cfg)
        feat_rows += _feature_probe_rows(t, src, F, sparse, strength, freq, frequent)
    known = {str(Path(sparse.dir).resolve()): (strength, freq)}  # one pass per run
    sae, interp, factors = _sparsity_tables(t, folder, cfg, sources, known)
    if cfg.atlas:
        write_report(sparse.dir, device=device)  # the SFNet's atlas, beside the SAE's
    return {
        "sae": sae,
        "interpretability": interp,
        "factors": factors,
        "pca": pca_df,
        "pca_variance": var_df,
        "agn": _agn_table(t, sparse, strength, cfg),
        "probes": pd.DataFrame(probe_rows),
        "probe_features": pd.DataFrame(feat_rows),
    }


def _sparsity_tables(
    t: _TargetData,
    folder: Path,
    cfg: CompareConfig,
    sources: dict[str, np.ndarray],
    known: dict[str, tuple[np.ndarray, np.ndarray]],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """SAE-k runs, the interpretability rows and the factors scored against of one group
    (:mod:`sfnet.workflows.sparsity`); the SAE beside the analysed SFNet gets a latent atlas.
    ``known``: run dir -> the strengths already computed (never a second pass of a run)."""
    from sfnet.analysis.sae import SparseAutoencoder
    from sfnet.workflows.sparsity import (
        SAE_DIR,
        factor_row,
        factor_table,
        interpretability_rows,
        sae_feature_pages,
        sae_tables,
    )

    on_dense = cfg.sae_features == "dense" or not cfg.features
    x = t.feats if on_dense else list(sources.values())[-1]
    sae, codes = sae_tables(t, x, folder, cfg)
    k = _analysis_k(t.target, cfg.ks)  # the latent atlas of the SAE beside the SFNet analysed
    where = folder / SAE_DIR / f"{t.target}_k{k}_r0"
    row = sae[(sae["k"] == k) & (sae["repeat"] == 0)].iloc[0]
    extra = {"sae_rmse": float(row["sae_rmse"]), "val_fvu": float(row["val_fvu"])}
    if cfg.atlas:
        model = SparseAutoencoder.load(where)
        sae_feature_pages(where, model, codes[(k, 0)], t, k, maps=on_dense, extra=extra)
    catalog = t.data.catalog.reset_index(drop=True)
    factors, kind = factor_table(catalog, t.target, t.data.images)

    def strengths(run: Any) -> tuple[np.ndarray, np.ndarray]:
        key = str(Path(run.dir).resolve())
        return known[key] if key in known else _sparse_strengths(run, t)

    rows = interpretability_rows(t, folder, cfg, codes, strengths, factors, kind)
    return sae, pd.DataFrame(rows), pd.DataFrame([factor_row(t.target, factors, kind)])


def _sweep_row(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    """One row of ``sweep_runs.csv``: the run's final validation RMSE, per target and grouped."""
    per = final_val_rmse(run_dir)
    row = {
        "target": spec.target,
        "k": spec.k if spec.k is not None else "dense",
        "repeat": spec.repeat,
        "seed": spec.config.train.seed,
        "run": spec.name,
        "group_rmse": float(group_rmse(np.array(list(per.values())))),
    }
    row.update({f"rmse_{n}": v for n, v in per.items()})
    return row


def _train_all(
    folder: Path,
    cfg: CompareConfig,
    progress: bool,
    runner: Callable[[list[str]], int] | None,
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Train (or reuse) every run of the plan; the sweep table, reused and trained names."""
    from sfnet.runs import is_finished

    specs = plan_runs(cfg)
    reused, trained, sweep_rows = [], [], []
    loaded: dict[str, Any] = {}
    for i, spec in enumerate(specs, 1):
        log.info("[%d/%d] %s", i, len(specs), spec.name)
        data = None
        if cfg.launcher == "inprocess" and not is_finished(folder / "runs" / spec.name):
            if spec.target not in loaded:
                loaded.clear()  # one target's galaxies in memory at a time
                loaded[spec.target] = load_dataset(spec.config.data)
            data = loaded[spec.target]
        run_dir, was_done = ensure_run(
            spec, folder, cfg, data=data, progress=progress, runner=runner
        )
        (reused if was_done else trained).append(spec.name)
        sweep_rows.append(_sweep_row(spec, run_dir))
    return pd.DataFrame(sweep_rows), reused, trained


def _analyze_all(
    folder: Path, cfg: CompareConfig, passes: dict[str, Any] | None = None
) -> dict[str, pd.DataFrame]:
    """:func:`analyze_target` of every target group, each table concatenated over the groups."""
    parts: dict[str, list[pd.DataFrame]] = {}
    for target in cfg.targets:
        log.info("analysing %s: PCA, AGN, probes", target)
        for key, df in analyze_target(target, folder, cfg, passes).items():
            parts.setdefault(key, []).append(df)
    keys = ("pca", "pca_variance", "agn", "probes", "probe_features", "sae", "interpretability")
    keys += ("factors",)
    out = {}
    for key in keys:
        dfs = [d for d in parts.get(key, []) if not d.empty]
        out[key] = pd.concat(dfs, ignore_index=True) if dfs else pd.DataFrame()
    return out


#: The file that marks a folder as a comparison (``sfnet compare``, ``sfnet reproduce``).
COMPARE_TOML = "compare.toml"


def check_comparison_folder(folder: Path) -> None:
    """Refuse a ``folder`` that exists, is not empty and is not a comparison (no
    :data:`COMPARE_TOML`): its tables, figures and runs would be written among, and over, the
    user's files (a ``README.md``, an ``agn.csv``).

    Raises:
        RunFolderError: naming the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"{folder}: is a file, not a comparison folder; choose another --out")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / COMPARE_TOML).is_file():
        raise RunFolderError(
            f"{folder}: not empty and not an sfnet comparison folder (no {COMPARE_TOML}); the "
            "comparison writes its runs and tables there - choose a new or empty --out"
        )


def check_inputs(folder: Path, cfg: CompareConfig) -> None:
    """Refuse, before any training and before ``compare.toml`` is (re)written, a comparison
    that would fail later or write among a user's files: a folder that is not a comparison
    (:func:`check_comparison_folder`), a ``features`` file that does not exist or cannot be
    read, or an existing run folder made with different settings (the folder then keeps
    describing its runs).

    Raises:
        DataError: the features file. RunFolderError: the folder, or a run with different
        settings.
    """
    check_comparison_folder(folder)
    if cfg.features:
        path = Path(cfg.features)
        if not path.is_file():
            raise DataError(f"{path}: no such features file (--features)")
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as e:
            raise DataError(f"{path}: cannot read the features file ({e.strerror})") from None
    for spec in plan_runs(cfg):
        _check_same_config(spec, Path(folder) / "runs" / spec.name)


def run_comparison(
    folder: Path,
    cfg: CompareConfig,
    *,
    progress: bool = False,
    runner: Callable[[list[str]], int] | None = None,
    passes: dict[str, Any] | None = None,
) -> CompareResult:
    """Train (or reuse) every run of the comparison, analyse them, write tables and figure.

    Each step is logged (``logging``, logger ``sfnet.workflows.compare``) at INFO level.

    Args:
        folder: the comparison folder (created; rerunning continues where it stopped).
        cfg: the settings.
        progress: tqdm bars inside each training.
        runner: runs a torchrun command list and returns its exit code (tests inject one).
        passes: a dict that receives, per analysed SFNet run (resolved run dir), ``(objID,
            Predictions with pooled features)`` of its one forward pass over all galaxies, for a
            caller that needs them too (``sfnet reproduce``); None keeps nothing.
    """
    folder = Path(folder)
    cfg.validate()
    check_inputs(folder, cfg)  # before anything is written or trained
    folder.mkdir(parents=True, exist_ok=True)
    cfg.save(folder / COMPARE_TOML)
    sweep, reused, trained = _train_all(folder, cfg, progress, runner)
    tables = _analyze_all(folder, cfg, passes)
    pca = tables["pca"]
    sparse_rows = sweep[sweep["k"] != "dense"].astype({"k": int})
    table = sweep_table(sparse_rows, pca[["target", "k", "pca_rmse"]])
    if not tables["sae"].empty:
        from sfnet.workflows.sparsity import sae_summary

        table = table.merge(sae_summary(tables["sae"]), on=["target", "k"], how="left")
    result = CompareResult(
        folder=folder,
        sweep=sweep,
        table=table,
        pca_variance=tables["pca_variance"],
        agn=tables["agn"],
        probes=tables["probes"],
        probe_features=tables["probe_features"],
        reused=reused,
        trained=trained,
        sae=tables["sae"],
        interpretability=tables["interpretability"],
        factors=tables["factors"],
    )
    write_outputs(result, cfg)
    return result


def write_outputs(result: CompareResult, cfg: CompareConfig) -> None:
    """CSV tables, the markdown page and the figure into ``result.folder``."""
    f = result.folder
    write_csv(result.sweep, f / "sweep_runs.csv")
    write_csv(result.table, f / "table_rmse.csv")
    write_csv(result.pca_variance, f / "pca_variance.csv")
    write_csv(result.agn, f / "agn.csv")
    write_csv(result.probes, f / "probes.csv")
    write_csv(result.probe_features, f / "probe_sfnet_features.csv")
    from sfnet.outputs.report import write_comparison_atlas
    from sfnet.workflows.sparsity import (
        factors_markdown,
        interpretability_markdown,
        interpretability_summary,
    )

    write_csv(result.sae, f / "sae_runs.csv")
    write_csv(result.interpretability, f / "interpretability_runs.csv")
    write_csv(result.factors, f / "factors.csv")
    interp = interpretability_summary(result.interpretability)
    write_csv(interp, f / "interpretability.csv")
    interp_md = factors_markdown(result.factors) + "\n" + interpretability_markdown(interp)
    atomic_write_bytes(f / "interpretability.md", interp_md.encode())
    table_md = rmse_table_markdown(result.table)
    atomic_write_bytes(f / "table_rmse.md", table_md.encode())
    plot_rmse_vs_k(result.table, f / "rmse_vs_k.png")
    if cfg.atlas:
        pages = []
        for t in cfg.targets:
            name = f"{t}_k{_analysis_k(t, cfg.ks)}_r0"
            pages.append((t, f"runs/{name}/report.html", f"sae/{name}/report.html"))
        write_comparison_atlas(f, pages, interp_md)

    md = [
        "# SFNet comparison\n",
        f"Data: `{cfg.path}`; targets: {', '.join(cfg.targets)}; ks: {list(cfg.ks)}; "
        f"repeats: {cfg.repeats}; epochs: {cfg.epochs}{' (quick)' if cfg.quick else ''}.\n",
        "## Validation RMSE: SFNet (mean ± s.e. over repeats) vs dense CNN + PCA and + SAE\n",
        "RMSE over all targets of a group (for spectral lines: the four log fluxes together). "
        "SAE: ridge regression on the k-sparse codes of a TopK sparse autoencoder trained on "
        f"the dense features ({cfg.sae_expansion}x dictionary, {cfg.sae_steps} steps; mean ± "
        "s.e. over SAE seeds; not in the paper).\n",
        table_md,
        "![RMSE vs k](rmse_vs_k.png)\n",
        "## Interpretability: built-in (SFNet) vs post-hoc (SAE, PCA) sparsity\n",
        "The k units of each method on the validation galaxies against the factors; DCI "
        "fitted on the training split. Higher is more interpretable on every column.\n",
        interp_md,
        "## Variance explained by the top principal components of the dense features\n",
        _df_markdown(result.pca_variance),
        "## AGN classification (linear SVM, validation)\n",
        _df_markdown(result.agn, 3),
        "## Probes from other features to the targets (validation RMSE)\n",
        "`fit_on = val` is the memorisation check: the probe is fitted on the validation galaxies.\n",
        _df_markdown(
            result.probes[["target", "source", "model", "fit_on", "rmse"]]
            if not result.probes.empty
            else result.probes
        ),
        "## Ridge from other features to the frequent SFNet features (validation R^2)\n",
        _df_markdown(result.probe_features, 3),
    ]
    atomic_write_bytes(f / "comparison.md", "\n".join(md).encode())


__all__ = [
    "CompareConfig",
    "DENSE_SEED_OFFSET",
    "LAUNCHERS",
    "QUICK",
    "CompareResult",
    "RunSpec",
    "analyze_target",
    "ensure_run",
    "final_val_rmse",
    "mean_se",
    "plan_runs",
    "run_comparison",
    "sweep_table",
    "rmse_table_markdown",
    "torchrun_command",
]
