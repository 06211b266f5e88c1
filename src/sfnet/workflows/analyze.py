"""The feature analysis of a trained sparse run folder (``sfnet analyze``).

:func:`analyze_run` computes everything the paper's Results and Discussion show, from a trained
sparse run, and writes it into the run folder:

``activations.npz``   sparse top-k activations + predictions of the analysed galaxies
``features.csv``      the feature table (label, f_activated, activation stats, equation weights,
                      most correlated catalog columns / ``true_*`` factors, redundant partners)
``equations.md/json`` linear equations in physical units (targets and BPT ratios)
``groundtruth.json``  best |Spearman rho| with ``true_*`` factors (synthetic data only; with
                      ``dense=`` also a dense run's PCA components and raw neurons)
``figures/``          per-feature BPT + top-9 grids, spatial maps on the top galaxies
                      (``maps_<label>``), A_f histograms, correlation matrix, equations figure
``analysis.json``     run summary (RMSE vs mean vs oracle), variance explained, file index;
                      written last, so its presence means the analysis is complete

The steps, in order: load the run and its activations (:func:`_load_or_compute`), pick the
features (:func:`_select`, ranked on the activations :func:`_stats_activations` chooses: post- or
pre-TopK), redundant features (:func:`_redundancy`), equations, feature table, variance
explained, ground truth, figures (with :func:`_map_figures` and :func:`_histogram_figure`), and
the summary. :mod:`sfnet.outputs.report` renders the files as HTML.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfnet.analysis.activations import (
    SparseActivations,
    correlation_matrix,
    dense_columns,
    feature_label,
    feature_stats,
    feature_table,
    model_sha,
    rank_features,
    scaled_strength,
    top_activating,
    variance_explained,
)
from sfnet.analysis.metrics import rmse
from sfnet.analysis.paper import STATS_CHOICES
from sfnet.analysis.redundancy import REDUNDANCY_RHO, Redundancy, redundant_features
from sfnet.config import INFERENCE_BATCH, check_fields, setting
from sfnet.data.catalog import units_of
from sfnet.errors import RunFolderError
from sfnet.outputs.tables import write_csv
from sfnet.runs import ACTIVATIONS, ANALYSIS, FEATURES_TABLE, FIGURES, GROUNDTRUTH, REPORT

#: The galaxies an analysis covers: the run's validation split or all of them.
SPLITS = ("val", "all")


@dataclass
class AnalysisOptions:
    """What :func:`analyze_run` does (the options of ``sfnet analyze`` and ``sfnet report``).

    Each field is a :func:`~sfnet.config.setting` (its help says what it is); the commands'
    options are generated from them (dest ``analysis.FIELD``).

    ``stats``: ``post-topk`` (f_activated, A_f, top-9 grids, BPT colours from the activations
    the head sees; default) or ``pre-topk`` (from the pooled features before TopK, non-zero =
    activated: the paper's notebooks), see :mod:`sfnet.analysis.paper`.
    """

    # on the command line as --all (split = all), a switch rather than a value: see cli/analyze.py
    split: str = setting(
        "val",
        "galaxies analysed: val (the run's validation split, as in the paper) or all",
        choices=SPLITS,
        cli=False,
    )
    n_features: int | None = setting(
        None, "frequent features that get figures and a card (none, the default: k)", ge=1
    )
    n_table: int | None = setting(
        None,
        "rows of the feature table and size of the correlation matrix (none, the default: 2k)",
        ge=1,
        cli=False,
    )
    dense: str | None = setting(
        None,
        "a dense run folder (sfnet train --dense): compare its PCA components and raw "
        "neurons with the true latent factors (synthetic data)",
        flag="dense_run",
    )
    pdf: bool = setting(False, "also write every figure as PDF")
    recompute: bool = setting(
        False, "recompute activations even if activations.npz matches the model"
    )
    batch_size: int = setting(INFERENCE_BATCH, "galaxies per forward pass", ge=1)
    redundancy_rho: float = setting(
        REDUNDANCY_RHO,
        "two features are redundant when the Spearman rho of their A_f over the galaxies "
        "where either fires exceeds this",
        gt=0.0,
        le=1.0,
    )
    stats: str = setting(
        "post-topk",
        "activation statistics (f_activated, A_f, top-9 grids, BPT colours) from the "
        "post-TopK activations the head sees, or from the pooled features before TopK, "
        "non-zero = activated (the paper's notebooks)",
        choices=STATS_CHOICES,
    )

    def validate(self) -> None:
        """Check every field against its declared type and range.

        Raises:
            ConfigError: naming ``analysis.FIELD``.
        """
        check_fields(self, "analysis")


@dataclass
class _Analysis:
    """What every step reads: the run, its data, the activations and the chosen features.

    ``acts`` are the activations the head sees (predictions, equations, variance explained);
    ``stat_acts`` those the statistics, ranking, table, ground truth and figures are taken from
    (``acts`` itself unless ``opts.stats`` is ``pre-topk``).
    """

    run: Any
    data: Any
    acts: SparseActivations
    stat_acts: SparseActivations
    stats: Any  # FeatureStats of stat_acts
    head_stats: Any  # FeatureStats of acts (the mean contributions to the head's output)
    ranked: np.ndarray  # active features, most frequent first
    top: np.ndarray  # the frequent features that get figures and a card
    table_feats: np.ndarray  # the rows of the feature table
    labels: dict[int, str]  # feature index -> label (SL17, Z61)
    catalog: pd.DataFrame  # catalog rows of the analysed galaxies
    y: np.ndarray  # (n, n_targets) targets of the analysed galaxies, physical units
    opts: AnalysisOptions

    @property
    def dir(self) -> Path:
        return Path(self.run.dir)

    @property
    def k(self) -> int:
        return int(self.run.meta.k)

    @property
    def target(self) -> str:
        return self.run.meta.target

    @property
    def names(self) -> list[str]:
        return list(self.run.meta.target_names)

    def label_list(self, features: Sequence[int]) -> list[str]:
        return [self.labels[int(f)] for f in features]


def _load_or_compute(
    run: Any, data: Any, opts: AnalysisOptions, progress: bool
) -> SparseActivations:
    """The run's ``activations.npz`` when it matches the weights and split; else computed."""
    from sfnet.analysis.activations import compute_activations

    path = Path(run.dir) / ACTIVATIONS
    if path.is_file() and not opts.recompute:
        acts = SparseActivations.load(path)
        if acts.split == opts.split and acts.model_sha == model_sha(run.dir):
            return acts
    acts = compute_activations(
        run, data, split=opts.split, batch_size=opts.batch_size, progress=progress
    )
    acts.save(path)
    return acts


def _stats_activations(
    run: Any, data: Any, acts: SparseActivations, opts: AnalysisOptions
) -> SparseActivations:
    """The activations the statistics are taken from (``opts.stats``): ``acts`` for
    ``post-topk``, the pooled features before TopK of the same galaxies for ``pre-topk``."""
    from sfnet.analysis.paper import pre_topk_activations
    from sfnet.predict import pooled_features

    if opts.stats == "post-topk":
        return acts
    pooled = pooled_features(run, data.images, acts.rows, batch_size=opts.batch_size)
    return pre_topk_activations(
        pooled, acts.rows, acts.objid, acts.predictions, acts.split, acts.model_sha
    )


def _oracle(catalog: pd.DataFrame, target: str, names: Sequence[str]) -> dict[str, Any]:
    """The oracle RMSE per target (synthetic data only), or why it is not available."""
    if not any(str(c).startswith("true_") for c in catalog.columns):
        return {"available": False, "reason": "no true_* columns (real data)"}
    try:
        from sfnet.analysis.oracle import oracle_rmse
    except ImportError:
        return {"available": False, "reason": "sfnet.analysis.oracle is not installed"}
    try:
        res = oracle_rmse(catalog, target)
    except Exception as e:  # noqa: BLE001 - reported in the summary, never hidden
        return {"available": False, "reason": f"oracle failed: {type(e).__name__}: {e}"}
    if isinstance(res, dict):
        values = {str(k): float(v) for k, v in res.items()}
    else:
        arr = np.atleast_1d(np.asarray(res, dtype=np.float64))
        values = {str(n): float(v) for n, v in zip(names, arr, strict=False)}
    return {"available": True, "rmse": values}


def _images(data: Any, rows: np.ndarray) -> np.ndarray:
    """images[rows] read in sorted order (friendly to memory-mapped stores), returned in order."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros((0, 3, 1, 1), np.uint8)
    order = np.argsort(rows, kind="stable")
    imgs = np.asarray(data.images[rows[order]])
    out = np.empty_like(imgs)
    out[order] = imgs
    return out


def _load_sparse_run(run_dir: Path, device: Any = "cpu") -> Any:
    from sfnet.runs import load_run

    run = load_run(run_dir, device=device)
    if run.meta.k is None:
        raise RunFolderError(
            f"{run_dir}: a dense run has no sparse features; analyse a sparse run and pass this "
            "one with --dense-run"
        )
    return run


def _select(
    run: Any,
    data: Any,
    acts: SparseActivations,
    opts: AnalysisOptions,
    label: Callable[[int], str] | None = None,
) -> _Analysis:
    """Rank the features by f_activated (of the ``opts.stats`` activations) and pick the
    frequent ones and the table rows; ``label`` names a feature (default: the run's SL/Z)."""
    k = int(run.meta.k)
    stat_acts = _stats_activations(run, data, acts, opts)
    stats = feature_stats(stat_acts)
    ranked = rank_features(stats.frequency)
    n_feat = min(opts.n_features or k, len(ranked))
    n_table = min(max(opts.n_table or 2 * k, n_feat), len(ranked))
    return _Analysis(
        run=run,
        data=data,
        acts=acts,
        stat_acts=stat_acts,
        stats=stats,
        head_stats=stats if stat_acts is acts else feature_stats(acts),
        ranked=ranked,
        top=ranked[:n_feat],
        table_feats=ranked[:n_table],
        labels={int(f): (label or partial(feature_label, run.meta.target))(f) for f in ranked},
        catalog=data.catalog.iloc[acts.rows].reset_index(drop=True),
        y=np.asarray(data.y)[acts.rows],
        opts=opts,
    )


def _redundancy(a: _Analysis) -> Redundancy:
    """Redundant features: pairs whose A_f agree (Spearman rho > ``opts.redundancy_rho``) over
    the galaxies where either fires, grouped; one feature split in two."""
    return redundant_features(a.acts, threshold=a.opts.redundancy_rho)


def _write_feature_table(a: _Analysis, eqs: Any, redundancy: Redundancy) -> None:
    """``features.csv``: the feature table with equation weights, mean contributions and each
    feature's redundant partners (``redundant_with``, comma-separated labels)."""
    table = feature_table(a.stat_acts, a.table_feats, a.target, a.catalog, stats=a.stats)
    for e in eqs.equations:
        table[f"w_{e.name}"] = [e.coefficient(int(f)) for f in a.table_feats]
        table[f"contrib_{e.name}"] = [
            e.coefficient(int(f)) * a.head_stats.mean_strength[int(f)] for f in a.table_feats
        ]
    table["redundant_with"] = [
        ", ".join(a.label_list(redundancy.partners(int(f)))) for f in a.table_feats
    ]
    # Spearman rho of each feature's A_f with each target (the report compares its sign with
    # the feature's weight: a disagreement means the head uses it as a correction).
    if len(a.table_feats) and len(a.y) == a.acts.n:
        from sfnet.analysis.activations import scaled_strength, spearman_with_catalog

        strengths = scaled_strength(a.acts, a.table_feats, a.stats.max)
        ys = pd.DataFrame(np.asarray(a.y, dtype=np.float64), columns=a.names)
        rho = spearman_with_catalog(strengths, ys, a.names)
        for j, name in enumerate(a.names):
            table[f"rho_{name}"] = rho[:, j]
    write_csv(table, a.dir / FEATURES_TABLE)


def _variance_records(a: _Analysis) -> list[dict[str, Any]]:
    """Variance explained by the top-m features, m = 1..2k (empty without stored predictions)."""
    if a.acts.predictions is None:
        return []
    n_var = min(2 * a.k, len(a.ranked))
    feats = a.ranked[:n_var]
    var = variance_explained(dense_columns(a.acts, feats), a.acts.predictions, a.y, feats)
    return var.to_records(a.names, a.label_list(feats))


def _groundtruth(a: _Analysis, strengths_top: np.ndarray) -> dict[str, Any]:
    """Ground truth of the top features (and of ``opts.dense``); writes ``groundtruth.json``."""
    from sfnet.analysis.groundtruth import dense_groundtruth, sfnet_groundtruth, write_groundtruth
    from sfnet.runs import load_run

    gt: dict[str, Any] = {}
    sf = sfnet_groundtruth(strengths_top, a.label_list(a.top), a.catalog)
    if sf is not None:
        gt["sfnet"] = sf
    if a.opts.dense:
        device = next(a.run.model.parameters()).device
        dense_run = load_run(Path(a.opts.dense), device=device)
        if dense_run.meta.k is not None:
            raise RunFolderError(
                f"{a.opts.dense}: --dense-run needs a dense run (trained with --dense)"
            )
        dg = dense_groundtruth(dense_run, a.k, batch_size=a.opts.batch_size)
        if dg is not None:
            gt["dense"] = dg
    if gt:
        gt["k"] = a.k
        write_groundtruth(gt, a.dir)
    else:  # no ground truth for this data: never leave an older analysis' file behind
        (a.dir / GROUNDTRUTH).unlink(missing_ok=True)
    return gt


def _feature_figures(
    a: _Analysis, strengths_top: np.ndarray, exts: Sequence[str]
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """One figure per frequent feature (top-9 galaxies, BPT diagram); the figure index and the
    most activating image of each feature."""
    from sfnet.data.catalog import catalog_bpt
    from sfnet.outputs.plots import plot_feature
    from sfnet.physics import bpt_ratios

    fig_dir = a.dir / FIGURES
    bpt_xy = bpt_ratios(a.y) if a.target == "bpt_lines" and a.y.shape[1] == 4 else None
    if bpt_xy is None:  # any other target: the catalog's own line fluxes, where it has them
        bpt_xy = catalog_bpt(a.catalog)
    figures: dict[str, str] = {}
    top_images: dict[str, np.ndarray] = {}
    for j, f in enumerate(a.top):
        lab = a.labels[int(f)]
        pos, raw = top_activating(a.stat_acts, int(f), 9)
        imgs = _images(a.data, a.stat_acts.rows[pos])
        if len(imgs):
            top_images[lab] = imgs[0]
        bpt = None if bpt_xy is None else (bpt_xy[0], bpt_xy[1], strengths_top[:, j])
        for ext in exts:
            p = plot_feature(
                fig_dir / f"feature_{lab}.{ext}",
                lab,
                imgs,
                raw / a.stats.max[int(f)],
                bpt=bpt,
                f_activated=float(a.stats.frequency[int(f)]),
                objids=np.asarray(a.data.objid)[a.stat_acts.rows[pos]],
            )
        figures[f"feature_{lab}"] = str(p.relative_to(a.dir).with_suffix(".png"))
    return figures, top_images


def _map_figures(a: _Analysis, exts: Sequence[str]) -> dict[str, str]:
    """Where each frequent feature fires: its spatial map overlaid on its top-9 galaxies
    (``maps_<label>``; maps computed for those galaxies only)."""
    from sfnet.analysis.maps import write_map_figures

    rows, strengths, objids = {}, {}, {}
    for f in a.top:
        lab = a.labels[int(f)]
        pos, raw = top_activating(a.acts, int(f), 9)
        rows[lab], strengths[lab] = a.acts.rows[pos], raw / a.stats.max[int(f)]
        objids[lab] = np.asarray(a.data.objid)[a.acts.rows[pos]]
    feats = {a.labels[int(f)]: int(f) for f in a.top}
    return write_map_figures(
        a.run, a.data.images, rows, feats, strengths, a.dir / FIGURES, exts, objids
    )


def _histogram_figure(a: _Analysis, exts: Sequence[str]) -> dict[str, str]:
    """How strongly each frequent feature fires: histograms of A_f where it is active."""
    from sfnet.analysis.activations import active_strengths
    from sfnet.outputs.plots import plot_activation_histograms

    hist = {a.labels[int(f)]: active_strengths(a.acts, int(f), a.stats.max[int(f)]) for f in a.top}
    freq = {a.labels[int(f)]: float(a.stats.frequency[int(f)]) for f in a.top}
    for ext in exts:
        plot_activation_histograms(a.dir / FIGURES / f"histograms.{ext}", hist, freq)
    return {"histograms": f"{FIGURES}/histograms.png"}


def _page_figures(
    a: _Analysis, strengths_top: np.ndarray, exts: Sequence[str], maps: bool = True
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The feature pages' figures: per frequent feature (BPT + top galaxies, spatial maps
    unless ``maps`` is False), and the A_f histograms; the figure index and top images."""
    (a.dir / FIGURES).mkdir(parents=True, exist_ok=True)
    figures, top_images = _feature_figures(a, strengths_top, exts)
    if maps:
        figures.update(_map_figures(a, exts))
    figures.update(_histogram_figure(a, exts))
    return figures, top_images


def feature_pages(
    run: Any,
    data: Any,
    acts: SparseActivations,
    opts: AnalysisOptions,
    label: Callable[[int], str],
    maps: bool = True,
) -> tuple[_Analysis, np.ndarray, dict[str, str]]:
    """The atlas' feature pages for any sparse code shaped like a run's activations (SAE
    latents, :mod:`sfnet.workflows.sparsity`): ranks the features of ``acts``, writes each
    frequent one's top-galaxy grid (with a BPT panel where the catalog has the lines), its
    spatial maps (``run.model.feature_maps``; skipped when ``maps`` is False) and the
    histograms into ``run.dir/figures``.

    Args:
        run: an object with ``dir``, ``meta`` (target, k, d, normalization), ``model`` and
            ``precision`` like :class:`sfnet.runs.Run`.
        data: the galaxies ``acts.rows`` index.
        acts: the sparse code of the analysed galaxies (``opts.stats`` must be post-topk).
        opts: ``n_features`` / ``n_table`` as for :func:`analyze_run`.
        label: feature index -> label (``L17``).

    Returns:
        (the analysis: ranked/top/table features, stats, catalog rows, labels; the top
        features' A_f (n, n_features); {figure name: path relative to ``run.dir``}).
    """
    a = _select(run, data, acts, opts, label)
    strengths_top = scaled_strength(a.stat_acts, a.top, a.stats.max)
    figures, _ = _page_figures(a, strengths_top, ["png"] + (["pdf"] if opts.pdf else []), maps)
    return a, strengths_top, figures


def _figures(
    a: _Analysis, eqs: Any, strengths_top: np.ndarray, exts: Sequence[str]
) -> dict[str, str]:
    """All figures: per feature (BPT + top galaxies, spatial maps), A_f histograms, the
    correlation matrix and the equations; their index."""
    from sfnet.analysis.equations import PRETTY
    from sfnet.outputs.plots import plot_correlation_matrix, plot_equations

    fig_dir = a.dir / FIGURES
    figures, top_images = _page_figures(a, strengths_top, exts)
    corr = correlation_matrix(a.stat_acts, a.table_feats)
    for ext in exts:
        plot_correlation_matrix(fig_dir / f"correlation.{ext}", corr, a.label_list(a.table_feats))
    figures["correlation"] = f"{FIGURES}/correlation.png"
    rows = []
    for e in eqs.equations:
        terms = [(a.labels[int(f)], e.coefficient(int(f))) for f in a.top]
        rows.append((PRETTY.get(e.name, e.name), e.intercept, terms))
    for ext in exts:
        plot_equations(fig_dir / f"equations.{ext}", rows, top_images)
    figures["equations"] = f"{FIGURES}/equations.png"
    return figures


def _rmse_summary(a: _Analysis) -> dict[str, Any]:
    """Validation RMSE of the model and of predicting the mean, and the oracle's (synthetic)."""
    _, val_idx = a.run.split(len(a.data.images))
    is_val = np.isin(a.acts.rows, val_idx)
    out: dict[str, Any] = {"n_val": int(is_val.sum())}
    preds = a.acts.predictions
    if preds is not None and is_val.any():
        y_val = a.y[is_val]
        model_rmse = rmse(preds[is_val], y_val)
        mean_rmse = rmse(np.broadcast_to(np.asarray(a.run.meta.target_mean), y_val.shape), y_val)
        out["model"] = dict(zip(a.names, map(float, model_rmse), strict=True))
        out["predict_mean"] = dict(zip(a.names, map(float, mean_rmse), strict=True))
    out["oracle"] = _oracle(a.data.catalog, a.target, a.names)
    return out


def _gt_summary(gt: dict[str, Any]) -> dict[str, Any]:
    """Model -> {mean_best_abs_rho, mean_margin} (without the per-unit lists)."""
    out: dict[str, Any] = {}
    parts = [("sfnet", gt.get("sfnet"))]
    if "dense" in gt:
        parts += [("dense_pca", gt["dense"]["pca"]), ("dense_neurons", gt["dense"]["neurons"])]
    for name, rep in parts:
        if rep is not None:
            out[name] = {k: v for k, v in rep.items() if k != "units"}
    return out


def _summary(
    a: _Analysis,
    variance: list,
    gt: dict[str, Any],
    redundancy: Redundancy,
    figures: dict[str, str],
    seconds: float,
) -> dict[str, Any]:
    """The content of ``analysis.json``."""
    metrics = a.run.metrics()
    cfg = a.run.config
    meta = a.run.meta
    return {
        "run": str(a.dir),
        "data": cfg.data.path,
        "target": a.target,
        "target_names": a.names,
        "units": units_of(cfg.data.target, cfg.data.path),
        "k": a.k,
        "d": int(meta.d),
        "epochs": int(meta.epochs_completed or len(metrics)),
        "epochs_planned": int(cfg.train.epochs),
        "pretrained": cfg.model.pretrained,
        "n_train": int(meta.n_train),
        "n_val": int(meta.n_val),
        "split": a.acts.split,
        "n_analysed": int(a.acts.n),
        "model_sha": a.acts.model_sha,
        "rmse": _rmse_summary(a),
        "frequent_features": a.label_list(a.top),
        "table_features": a.label_list(a.table_feats),
        "n_active_features": len(a.ranked),
        "stats": a.opts.stats,
        "variance_explained": variance,
        "groundtruth": _gt_summary(gt),
        "redundancy": redundancy.to_dict(a.labels),
        "figures": figures,
        "options": asdict(a.opts),
        "seconds": round(seconds, 2),
    }


def analyze_run(
    run_dir: Path | str,
    options: AnalysisOptions | None = None,
    *,
    progress: bool = False,
    device: Any = "cpu",
) -> dict[str, Any]:
    """Run the whole feature analysis of a trained sparse run; write its files; return the summary.

    Args:
        run_dir: a finished sparse run folder (``sfnet train --k K``).
        options: see :class:`AnalysisOptions`.
        progress: show a progress bar while computing activations.
        device: where the model runs (a torch device or its name, e.g. ``cuda``).

    Returns:
        The content of ``analysis.json``.

    Raises:
        RunFolderError: not a run folder, or a dense run (analyse its sparse counterpart and pass
            the dense one as ``options.dense``).
        ConfigError: an option outside its declared range (naming ``analysis.FIELD``).
    """
    from sfnet.analysis.equations import equations_for_run, write_equations
    from sfnet.io import atomic_write_json

    t0 = time.perf_counter()
    opts = options or AnalysisOptions()
    opts.validate()  # the CLI checked its options already; Run.report(**options) did not
    run_dir = Path(run_dir)
    # 1. the run, its data and its sparse activations (computed once, then read from the folder)
    run = _load_sparse_run(run_dir, device)
    data = run.data()
    a = _select(run, data, _load_or_compute(run, data, opts, progress), opts)
    # 2. equations (exact in physical units on these galaxies), redundant features, feature table
    eqs = equations_for_run(run, a.acts, a.target)
    write_equations(eqs, run_dir)
    redundancy = _redundancy(a)
    _write_feature_table(a, eqs, redundancy)
    # 3. variance explained, ground truth (synthetic data), figures
    variance = _variance_records(a)
    strengths_top = scaled_strength(a.stat_acts, a.top, a.stats.max)
    gt = _groundtruth(a, strengths_top)
    exts = ["png"] + (["pdf"] if opts.pdf else [])
    figures = _figures(a, eqs, strengths_top, exts)
    # 4. the summary, written last: its presence means the analysis is complete
    summary = _summary(a, variance, gt, redundancy, figures, time.perf_counter() - t0)
    atomic_write_json(run_dir / ANALYSIS, summary)
    return summary


def is_analysed(run_dir: Path | str) -> bool:
    """True when the run folder holds a complete analysis of its current weights."""
    path = Path(run_dir) / ANALYSIS
    if not path.is_file():
        return False
    try:
        s = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return s.get("model_sha") == model_sha(Path(run_dir))


def write_report(
    run_dir: Path | str,
    options: AnalysisOptions | None = None,
    *,
    progress: bool = False,
    device: Any = "cpu",
) -> Path:
    """Write ``report.html`` into the run folder (analysing it first if needed, on ``device``,
    a torch device or its name); return its path.

    This is the one call for "analysis + atlas" on a trained sparse run folder.
    """
    from sfnet.io import atomic_write_bytes
    from sfnet.outputs.report import render_report

    run_dir = Path(run_dir)
    if options is not None or not is_analysed(run_dir):
        analyze_run(run_dir, options, progress=progress, device=device)
    out = run_dir / REPORT
    atomic_write_bytes(out, render_report(run_dir).encode("utf-8"))
    return out
