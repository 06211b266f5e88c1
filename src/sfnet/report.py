"""The feature analysis of a run folder and its HTML feature atlas.

:func:`analyze_run` computes everything the paper's Results and Discussion show, from a trained
sparse run, and writes it into the run folder:

``activations.npz``   sparse top-k activations + predictions of the analysed galaxies
``features.csv``      the feature table (label, f_activated, activation stats, equation weights,
                      most correlated catalog columns / ``true_*`` factors)
``equations.md/json`` linear equations in physical units (targets and BPT ratios)
``groundtruth.json``  best |Spearman rho| with ``true_*`` factors (synthetic data only; with
                      ``dense=`` also a dense run's PCA components and raw neurons)
``figures/``          per-feature BPT + top-9 grids, correlation matrix, equations figure
``analysis.json``     run summary (RMSE vs mean vs oracle), variance explained, file index;
                      written last, so its presence means the analysis is complete

:func:`write_report` turns these into one self-contained ``report.html`` (figures embedded as
base64, no scripts, no external resources), running the analysis first when needed.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfnet.errors import RunFolderError
from sfnet.features import (
    ACTIVATIONS_FILE,
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

ANALYSIS_FILE = "analysis.json"
REPORT_FILE = "report.html"
FIGURES = "figures"


@dataclass
class AnalysisOptions:
    """What :func:`analyze_run` does.

    Attributes:
        split: ``val`` (the run's validation split, as in the paper) or ``all`` galaxies.
        n_features: frequent features that get a card and figures (default: k).
        n_table: rows of the feature table and size of the correlation matrix (default: 2k).
        dense: a dense run folder to compare ground-truth interpretability with (optional).
        pdf: also write every figure as PDF.
        recompute: recompute activations even if ``activations.npz`` matches the model.
        batch_size: galaxies per forward pass.
        stats: ``post-topk`` (f_activated, A_f, top-9 grids, BPT colours from the activations
            the head sees; default) or ``pre-topk`` (from the pooled features before TopK,
            non-zero = activated: the paper's notebooks), see :mod:`sfnet.analysis.paper`.
    """

    split: str = "val"
    n_features: int | None = None
    n_table: int | None = None
    dense: str | None = None
    pdf: bool = False
    recompute: bool = False
    batch_size: int = 256
    stats: str = "post-topk"


def _stats_activations(
    run: Any, data: Any, acts: SparseActivations, opts: AnalysisOptions
) -> SparseActivations:
    """The activations the statistics are taken from (``opts.stats``)."""
    from sfnet.analysis.paper import STATS_CHOICES, pre_topk_activations
    from sfnet.predict import pooled_features

    if opts.stats not in STATS_CHOICES:
        raise RunFolderError(f"stats must be one of {STATS_CHOICES}, got {opts.stats!r}")
    if opts.stats == "post-topk":
        return acts
    pooled = pooled_features(run, data.images, acts.rows, batch_size=opts.batch_size)
    return pre_topk_activations(
        pooled, acts.rows, acts.objid, acts.predictions, acts.split, acts.model_sha
    )


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="gal")


def _load_or_compute(
    run: Any, data: Any, opts: AnalysisOptions, progress: bool
) -> SparseActivations:
    from sfnet.features import compute_activations

    path = Path(run.dir) / ACTIVATIONS_FILE
    if path.is_file() and not opts.recompute:
        acts = SparseActivations.load(path)
        if acts.split == opts.split and acts.model_sha == model_sha(run.dir):
            return acts
    bar = _progress_bar(progress, 0, "activations")

    def _cb(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        acts = compute_activations(
            run, data, split=opts.split, batch_size=opts.batch_size, progress=_cb
        )
    finally:
        if bar is not None:
            bar.close()
    acts.save(path)
    return acts


def _rmse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=0))


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


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    from sfnet.io import atomic_write_bytes

    atomic_write_bytes(path, df.to_csv(index=False, float_format="%.6g").encode())


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


def analyze_run(
    run_dir: Path | str,
    options: AnalysisOptions | None = None,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the whole feature analysis of a trained sparse run; write its files; return the summary.

    Args:
        run_dir: a finished sparse run folder (``sfnet train --k K``).
        options: see :class:`AnalysisOptions`.
        progress: show a progress bar while computing activations.

    Returns:
        The content of ``analysis.json``.

    Raises:
        RunFolderError: not a run folder, or a dense run (analyse its sparse counterpart and pass
            the dense one as ``options.dense``).
    """
    from sfnet.analysis.equations import equations_for_run, write_equations
    from sfnet.analysis.groundtruth import dense_groundtruth, sfnet_groundtruth, write_groundtruth
    from sfnet.physics import bpt_ratios
    from sfnet.plots import plot_correlation_matrix, plot_equations, plot_feature
    from sfnet.runs import load_run

    t0 = time.perf_counter()
    opts = options or AnalysisOptions()
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    if run.meta.k is None:
        raise RunFolderError(
            f"{run_dir}: a dense run has no sparse features; analyse a sparse run and pass this "
            "one with --dense"
        )
    k = int(run.meta.k)
    target = run.meta.target
    names = list(run.meta.target_names)
    data = run.load_data()
    acts = _load_or_compute(run, data, opts, progress)
    stat_acts = _stats_activations(run, data, acts, opts)

    stats = feature_stats(stat_acts)
    head_stats = stats if stat_acts is acts else feature_stats(acts)
    ranked = rank_features(stats.frequency)
    n_feat = min(opts.n_features or k, len(ranked))
    n_table = min(max(opts.n_table or 2 * k, n_feat), len(ranked))
    top = ranked[:n_feat]
    table_feats = ranked[:n_table]
    labels = {int(f): feature_label(target, f) for f in ranked}
    catalog = data.catalog.iloc[acts.rows].reset_index(drop=True)
    y = np.asarray(data.y)[acts.rows]

    # equations (exact in physical units on these galaxies)
    eqs = equations_for_run(run, acts, target)
    write_equations(eqs, run_dir)

    # the feature table, with equation weights and mean contributions
    table = feature_table(stat_acts, table_feats, target, catalog, stats=stats)
    for e in eqs.equations:
        table[f"w_{e.name}"] = [e.coefficient(int(f)) for f in table_feats]
        table[f"contrib_{e.name}"] = [
            e.coefficient(int(f)) * head_stats.mean_strength[int(f)] for f in table_feats
        ]
    _write_csv(table, run_dir / "features.csv")

    # variance explained by the top-m features, m = 1..2k
    n_var = min(2 * k, len(ranked))
    var_cols = dense_columns(acts, ranked[:n_var])
    preds = acts.predictions if acts.predictions is not None else None
    var = variance_explained(var_cols, preds, y, ranked[:n_var]) if preds is not None else None

    # ground truth (synthetic data)
    strengths_top = scaled_strength(stat_acts, top, stats.max)
    gt: dict[str, Any] = {}
    sf = sfnet_groundtruth(strengths_top, [labels[int(f)] for f in top], catalog)
    if sf is not None:
        gt["sfnet"] = sf
    if opts.dense:
        dense_run = load_run(Path(opts.dense))
        if dense_run.meta.k is not None:
            raise RunFolderError(f"{opts.dense}: --dense needs a dense run (trained with --dense)")
        dg = dense_groundtruth(dense_run, k, batch_size=opts.batch_size)
        if dg is not None:
            gt["dense"] = dg
    if gt:
        gt["k"] = k
        write_groundtruth(gt, run_dir)
    else:  # no ground truth for this data: never leave an older analysis' file behind
        (run_dir / "groundtruth.json").unlink(missing_ok=True)

    # figures
    fig_dir = run_dir / FIGURES
    fig_dir.mkdir(exist_ok=True)
    exts = ["png"] + (["pdf"] if opts.pdf else [])
    bpt_xy = bpt_ratios(y) if target == "bpt_lines" and y.shape[1] == 4 else None
    figures: dict[str, str] = {}
    top_images: dict[str, np.ndarray] = {}
    for j, f in enumerate(top):
        lab = labels[int(f)]
        pos, raw = top_activating(stat_acts, int(f), 9)
        imgs = _images(data, acts.rows[pos])
        if len(imgs):
            top_images[lab] = imgs[0]
        bpt = None if bpt_xy is None else (bpt_xy[0], bpt_xy[1], strengths_top[:, j])
        for ext in exts:
            p = plot_feature(
                fig_dir / f"feature_{lab}.{ext}",
                lab,
                imgs,
                raw / stats.max[int(f)],
                bpt=bpt,
                f_activated=float(stats.frequency[int(f)]),
            )
        figures[f"feature_{lab}"] = str(p.relative_to(run_dir).with_suffix(".png"))
    corr = correlation_matrix(stat_acts, table_feats)
    for ext in exts:
        plot_correlation_matrix(
            fig_dir / f"correlation.{ext}", corr, [labels[int(f)] for f in table_feats]
        )
    figures["correlation"] = f"{FIGURES}/correlation.png"
    rows = []
    from sfnet.analysis.equations import PRETTY

    for e in eqs.equations:
        terms = [(labels[int(f)], e.coefficient(int(f))) for f in top]
        rows.append((PRETTY.get(e.name, e.name), e.intercept, terms))
    for ext in exts:
        plot_equations(fig_dir / f"equations.{ext}", rows, top_images)
    figures["equations"] = f"{FIGURES}/equations.png"

    # summary
    _, val_idx = run.split(len(data.images))
    is_val = np.isin(acts.rows, val_idx)
    summary_rmse: dict[str, Any] = {"n_val": int(is_val.sum())}
    if preds is not None and is_val.any():
        model_rmse = _rmse(preds[is_val], y[is_val])
        mean_rmse = _rmse(np.asarray(run.meta.target_mean)[None, :], y[is_val])
        summary_rmse["model"] = dict(zip(names, map(float, model_rmse), strict=True))
        summary_rmse["predict_mean"] = dict(zip(names, map(float, mean_rmse), strict=True))
    summary_rmse["oracle"] = _oracle(data.catalog, target, names)
    metrics = run.metrics()
    cfg = run.config
    summary: dict[str, Any] = {
        "run": str(run_dir),
        "data": cfg.data.data,
        "target": target,
        "target_names": names,
        "k": k,
        "d": int(run.meta.d),
        "epochs": int(run.meta.epochs_completed or len(metrics)),
        "epochs_planned": int(cfg.train.epochs),
        "pretrained": cfg.model.pretrained,
        "n_train": int(run.meta.n_train),
        "n_val": int(run.meta.n_val),
        "split": acts.split,
        "n_analysed": int(acts.n),
        "model_sha": acts.model_sha,
        "rmse": summary_rmse,
        "frequent_features": [labels[int(f)] for f in top],
        "table_features": [labels[int(f)] for f in table_feats],
        "n_active_features": len(ranked),
        "stats": opts.stats,
        "variance_explained": (
            var.to_records(names, [labels[int(f)] for f in ranked[:n_var]]) if var else []
        ),
        "groundtruth": _gt_summary(gt),
        "figures": figures,
        "options": asdict(opts),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    from sfnet.io import atomic_write_json

    atomic_write_json(run_dir / ANALYSIS_FILE, summary)
    return summary


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


# ---------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;
background:#f6f5f2;color:#1d1d1f;line-height:1.45}
header{background:#1b1030;color:#fff;padding:1.2em 2em}
header h1{margin:0 0 .2em 0;font-size:1.6em} header p{margin:0;opacity:.85}
main{max-width:1200px;margin:0 auto;padding:1em 2em 3em}
section{background:#fff;border-radius:8px;padding:1em 1.4em;margin:1.2em 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{margin-top:.2em;border-bottom:2px solid #b0208c;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f0ecf3} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto}
.cards{display:flex;flex-direction:column;gap:1em}
.card{border:1px solid #e2dde8;border-radius:8px;padding:.8em 1em}
.card h3{margin:.1em 0 .4em 0;color:#5c0a5c}
.cols{display:flex;flex-wrap:wrap;gap:1.5em}
code,pre{background:#f4f1f7;border-radius:4px;padding:.1em .3em;font-size:.9em}
pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}
.muted{color:#666;font-size:.9em}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _img(run_dir: Path, rel: str, alt: str) -> str:
    path = run_dir / rel
    if not path.is_file():
        return f'<p class="muted">({_esc(rel)} missing)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def _fmt(v: Any, spec: str = ".4f") -> str:
    if v is None:
        return "–"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return _esc(v)
    return "–" if not np.isfinite(f) else format(f, spec)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: set[int]) -> str:
    out = ["<table>"]
    if any(header):
        out += ["<thead><tr>", *(f"<th>{_esc(h)}</th>" for h in header), "</tr></thead>"]
    out.append("<tbody>")
    for r in rows:
        out.append("<tr>")
        for i, v in enumerate(r):
            cls = ' class="num"' if i in numeric else ""
            out.append(f"<td{cls}>{v}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _stats_title(stats: str) -> str:
    from sfnet.analysis.paper import STATS_TITLES

    return STATS_TITLES.get(stats, stats)


def _summary_html(s: dict[str, Any]) -> str:
    info = [
        ("data", f"<code>{_esc(s['data'])}</code>"),
        ("target", _esc(s["target"])),
        ("k (active features of d)", f"{s['k']} of {s['d']}"),
        ("epochs", f"{s['epochs']} / {s['epochs_planned']}"),
        ("init", _esc(s.get("pretrained") or "random")),
        ("galaxies", f"{s['n_train']} train, {s['n_val']} validation"),
        (
            "analysed",
            f"{s['n_analysed']} galaxies ({'validation split' if s['split'] == 'val' else 'all'})",
        ),
        ("features ever active", str(s["n_active_features"])),
        ("activation statistics", _esc(_stats_title(s.get("stats", "post-topk")))),
    ]
    rows = [[f"<b>{_esc(a)}</b>", b] for a, b in info]
    out = _table(["", ""], rows, set())
    r = s["rmse"]
    oracle = r.get("oracle", {})
    orc = oracle.get("rmse", {}) if oracle.get("available") else {}
    if "model" in r:
        trows = [
            [
                _esc(n),
                _fmt(r["model"][n]),
                _fmt(r["predict_mean"][n]),
                _fmt(orc.get(n)) if orc else "–",
            ]
            for n in s["target_names"]
        ]
        out += "<h3>Validation RMSE (physical units)</h3>"
        out += _table(["target", "SFNet", "predict the mean", "oracle"], trows, {1, 2, 3})
    if not oracle.get("available", False):
        out += f'<p class="muted">Oracle: {_esc(oracle.get("reason", "not available"))}</p>'
    else:
        out += (
            '<p class="muted">Oracle: how well the true latent factors alone predict each '
            "target; no image model can do better.</p>"
        )
    return out


def _variance_html(s: dict[str, Any]) -> str:
    recs = s.get("variance_explained") or []
    if not recs:
        return "<p>No predictions stored.</p>"
    names = s["target_names"]
    rows = []
    for rec in recs:
        rmse = rec.get("rmse", {})
        rows.append(
            [str(rec["m"]), _esc(", ".join(rec["features"]))]
            + [_fmt(100 * rec["r2_prediction_mean"], ".2f") + "%"]
            + [_fmt(100 * rec.get("r2_target_mean", np.nan), ".2f") + "%"]
            + [_fmt(rmse.get(n)) for n in names]
        )
    head = ["m", "features", "prediction variance explained", "target variance explained"]
    head += [f"RMSE {n}" for n in names]
    return (
        '<p class="muted">A linear head refitted on only the m most frequent features '
        "(least squares on the analysed galaxies).</p>"
        + _table(head, rows, set(range(2, len(head))))
    )


def _feature_table_html(table: pd.DataFrame) -> str:
    extra = [c for c in ("correlates", "true_correlates") if c in table.columns]
    rows = []
    for _, r in table.iterrows():
        row = [
            f"<b>{_esc(r['label'])}</b>",
            _fmt(100 * r["f_activated"], ".1f") + "%",
            _fmt(r["mean_strength"], ".3f"),
        ]
        row += [_esc(r[c]) if isinstance(r[c], str) else "" for c in extra]
        rows.append(row)
    head = ["feature", "f_activated", "mean A_f"]
    head += [
        {
            "correlates": "catalog correlates (Spearman ρ)",
            "true_correlates": "true factors (Spearman ρ)",
        }[c]
        for c in extra
    ]
    return _table(head, rows, {1, 2})


def _equations_html(eqs: dict[str, Any], top: Sequence[str]) -> str:
    from sfnet.analysis.equations import PRETTY

    out = [f'<p class="muted">{_esc(eqs["scaling"])}; {_esc(eqs["units"])}.</p>']
    for e in eqs["equations"]:
        terms = sorted(
            e["terms"], key=lambda t: top.index(t["label"]) if t["label"] in top else 1e9
        )
        shown = [t for t in terms if t["label"] in top]
        rest = [t for t in terms if t["label"] not in top]
        line = " ".join(
            f"{'−' if t['coefficient'] < 0 else '+'} {abs(t['coefficient']):.4f}&nbsp;A<sub>"
            f"{_esc(t['label'])}</sub>"
            for t in shown
        )
        if rest:
            line += f" + ({len(rest)} rarer features)"
        name = PRETTY.get(e["name"], e["name"])
        out.append(f"<p><b>{_esc(name)}</b> = {e['intercept']:.4f} {line}</p>")
        trows = [
            [_esc(t["label"]), _fmt(t["coefficient"], "+.4f"), _fmt(t["mean_contribution"], "+.4f")]
            for t in terms
        ]
        out.append(
            f"<details><summary>all {len(terms)} terms</summary>"
            + _table(
                ["feature", "coefficient (dex per A_f)", "mean contribution (dex)"], trows, {1, 2}
            )
            + "</details>"
        )
    return "".join(out)


def _gt_html(gt: dict[str, Any] | None) -> str:
    if not gt:
        return (
            '<p class="muted">No ground truth: the catalog has no <code>true_*</code> columns '
            "(real data).</p>"
        )
    parts = []
    models = []
    if "sfnet" in gt:
        models.append(("SFNet top-k features", gt["sfnet"]))
    if "dense" in gt:
        models.append(("dense CNN, top-k PCA components", gt["dense"]["pca"]))
        models.append(("dense CNN, k most variable neurons", gt["dense"]["neurons"]))
    srows = [
        [_esc(name), _fmt(m["mean_best_abs_rho"], ".3f"), _fmt(m["mean_margin"], ".3f")]
        for name, m in models
    ]
    parts.append(
        '<p class="muted">Per unit: the best |Spearman ρ| with any true latent factor, and its '
        "margin over the second best (monosemanticity). Summary: mean over the top-k units.</p>"
    )
    parts.append(_table(["model", "mean best |ρ|", "mean margin"], srows, {1, 2}))
    for name, m in models:
        urows = [
            [
                _esc(u["unit"]),
                _esc(u["best_factor"]),
                _fmt(u["best_rho"], "+.3f"),
                _esc(u["second_factor"]),
                _fmt(u["second_rho"], "+.3f"),
                _fmt(u["margin"], ".3f"),
            ]
            for u in m["units"]
        ]
        parts.append(f"<h3>{_esc(name)}</h3>")
        parts.append(
            _table(["unit", "best factor", "ρ", "second", "ρ", "margin"], urows, {2, 4, 5})
        )
    return "".join(parts)


def _card_html(run_dir: Path, s: dict[str, Any], row: pd.Series, eqs: dict, gt: dict | None) -> str:
    lab = str(row["label"])
    fig = s["figures"].get(f"feature_{lab}")
    wrows = []
    for e in eqs["equations"]:
        term = next((t for t in e["terms"] if t["label"] == lab), None)
        if term is not None:
            wrows.append(
                [
                    _esc(e["name"]),
                    _fmt(term["coefficient"], "+.4f"),
                    _fmt(term["mean_contribution"], "+.4f"),
                ]
            )
    gt_line = ""
    if gt and "sfnet" in gt:
        u = next((u for u in gt["sfnet"]["units"] if u["unit"] == lab), None)
        if u:
            gt_line = (
                f"<p><b>Ground truth:</b> best factor <code>{_esc(u['best_factor'])}</code> "
                f"(ρ = {u['best_rho']:+.3f}), next <code>{_esc(u['second_factor'])}</code> "
                f"(ρ = {u['second_rho']:+.3f}); margin {u['margin']:.3f}</p>"
            )
    corr = row.get("correlates")
    tcorr = row.get("true_correlates")
    return (
        f'<div class="card" id="{_esc(lab)}"><h3>{_esc(lab)}</h3>'
        f"<p>f_activated = {100 * row['f_activated']:.1f}% · mean A_f = {row['mean_strength']:.3f}"
        f" · max activation = {row['max_activation']:.4g}</p>"
        + (_img(run_dir, fig, f"{lab}: BPT diagram and top activations") if fig else "")
        + '<div class="cols"><div>'
        + _table(["equation", "weight (dex per A_f)", "mean contribution (dex)"], wrows, {1, 2})
        + "</div><div>"
        + (f"<p><b>Catalog correlates:</b> {_esc(corr)}</p>" if isinstance(corr, str) else "")
        + (f"<p><b>True factors:</b> {_esc(tcorr)}</p>" if isinstance(tcorr, str) else "")
        + gt_line
        + "</div></div></div>"
    )


def render_report(run_dir: Path | str) -> str:
    """The HTML text of the feature atlas from an analysed run folder."""
    run_dir = Path(run_dir)
    path = run_dir / ANALYSIS_FILE
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: not analysed yet (run 'sfnet analyze {run_dir}')")
    s = json.loads(path.read_text())
    table = pd.read_csv(run_dir / "features.csv")
    eqs = json.loads((run_dir / "equations.json").read_text())
    gt_path = run_dir / "groundtruth.json"
    gt = json.loads(gt_path.read_text()) if gt_path.is_file() else None
    top = list(s["frequent_features"])
    cards = [
        _card_html(run_dir, s, row, eqs, gt)
        for _, row in table.iterrows()
        if str(row["label"]) in top
    ]
    title = f"sfnet feature atlas — {Path(s['run']).name}"
    body = [
        f"<header><h1>{_esc(title)}</h1><p>{_esc(s['target'])} · k = {s['k']} · "
        f"frequent features: {_esc(', '.join(top))}</p></header><main>",
        f"<section><h2>Run</h2>{_summary_html(s)}</section>",
        "<section><h2>Features</h2>"
        '<p class="muted">Ranked by f_activated (share of analysed galaxies where the feature '
        "is non-zero). A_f = activation / max of that feature. Correlates: Spearman ρ of A_f "
        "with catalog columns.</p>" + _feature_table_html(table) + "</section>",
        f"<section><h2>Variance explained by the top features</h2>{_variance_html(s)}</section>",
        f'<section><h2>Frequent features</h2><div class="cards">{"".join(cards)}</div></section>',
        "<section><h2>Equations</h2>"
        + _img(run_dir, s["figures"]["equations"], "equations figure")
        + _equations_html(eqs, top)
        + "</section>",
        "<section><h2>Correlation of feature activations</h2>"
        + _img(run_dir, s["figures"]["correlation"], "correlation matrix")
        + "</section>",
        f"<section><h2>Ground-truth interpretability</h2>{_gt_html(gt)}</section>",
        f'<p class="muted">Analysis took {s.get("seconds", 0):.1f} s · model {_esc(s["model_sha"])}'
        "</p></main>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


def is_analysed(run_dir: Path | str) -> bool:
    """True when the run folder holds a complete analysis of its current weights."""
    path = Path(run_dir) / ANALYSIS_FILE
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
) -> Path:
    """Write ``report.html`` into the run folder (analysing it first if needed); return its path.

    This is the one call for "analysis + atlas" on a trained sparse run folder.
    """
    from sfnet.io import atomic_write_bytes

    run_dir = Path(run_dir)
    if options is not None or not is_analysed(run_dir):
        analyze_run(run_dir, options, progress=progress)
    out = run_dir / REPORT_FILE
    atomic_write_bytes(out, render_report(run_dir).encode("utf-8"))
    return out
