"""The HTML feature atlas of an analysed run folder (``sfnet report``).

:func:`render_report` turns the files :func:`sfnet.workflows.analyze.analyze_run` wrote into one
self-contained ``report.html`` (figures embedded as base64, no scripts, no external resources);
:func:`sfnet.workflows.analyze.write_report` writes it, running the analysis first when needed.
:func:`write_sae_report` does the same for a sparse autoencoder's latents.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfnet.errors import RunFolderError
from sfnet.runs import ANALYSIS, EQUATIONS_JSON, FEATURES_TABLE, GROUNDTRUTH, REPORT

#: A sparse autoencoder's latents, written by :mod:`sfnet.workflows.sparsity` into its folder.
LATENTS_TABLE = "latents.csv"
LATENTS_SUMMARY = "latents.json"

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
.note{background:#fff4e0;border-left:4px solid #e69500;padding:.4em .7em}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _img(run_dir: Path, rel: str, alt: str) -> str:
    path = run_dir / rel
    if not path.is_file():
        return f'<p class="muted">({_esc(rel)} missing)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def _training_html(run_dir: Path, units: dict[str, str] | None = None) -> str:
    """Training curves (train loss, validation RMSE, lr per epoch) from ``metrics.jsonl``."""
    import io

    from sfnet.outputs.plots import training_curves_figure
    from sfnet.runs import METRICS, read_metrics

    metrics = read_metrics(run_dir / METRICS)
    if not metrics:
        return '<p class="muted">(no metrics.jsonl)</p>'
    buf = io.BytesIO()
    fig = training_curves_figure(metrics, units)
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="training curves">'


def _fmt(v: Any, spec: str = ".4f") -> str:
    from sfnet.outputs.tables import format_number

    return _esc(format_number(v, spec, missing="–"))


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
        (
            "features ever active",
            f"{s['n_active_features']} of {s['d']} (the other {s['d'] - s['n_active_features']}"
            " are dead: never among any analysed galaxy's top k, so they never reach the "
            "prediction; training logs the same count per epoch as dead_features)",
        ),
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
                f"{_esc(n)} [{_esc(_unit(s.get('units'), n))}]",
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
        red = r.get("redundant_with")
        row.append(_esc(red) if isinstance(red, str) else "")
        rows.append(row)
    head = ["feature", "f_activated", "mean A_f"]
    head += [
        {
            "correlates": "catalog correlates (Spearman ρ)",
            "true_correlates": "true factors (Spearman ρ)",
        }[c]
        for c in extra
    ]
    head.append("redundant with (ρ > threshold)")
    return _table(head, rows, {1, 2})


def _redundancy_html(s: dict[str, Any]) -> str:
    red = s.get("redundancy")
    if not red:
        return '<p class="muted">(no redundancy analysis in this run\'s analysis.json)</p>'
    out = [
        f'<p class="muted">Two features are redundant when the Spearman ρ of their A_f over '
        f"the galaxies where either fires exceeds {red['threshold']:.2f}: one feature split in "
        f"two. Compared: the {red['n_compared']} features active on at least "
        f"{red.get('min_active', 10)} analysed galaxies (at most the "
        f"{red.get('max_features', 32)} most frequent).</p>",
        f"<p><b>Effective number of distinct features:</b> {red['n_effective']} of "
        f"{red['n_compared']} compared.</p>",
    ]
    if not red["groups"]:
        out.append("<p>No redundant groups.</p>")
        return "".join(out)
    rows = [[_esc(", ".join(g))] for g in red["groups"]]
    out.append(_table(["redundant group"], rows, set()))
    prs = [
        [_esc(p["a"]), _esc(p["b"]), _fmt(p["rho"], "+.3f"), str(p["n_union"])]
        for p in red["pairs"]
    ]
    out.append(_table(["feature", "feature", "Spearman ρ", "galaxies (either fires)"], prs, {2, 3}))
    return "".join(out)


def _unit(units: dict[str, str] | None, name: str) -> str:
    """The unit of a target or equation (``dex`` for the BPT ratios and unknown logs)."""
    if units is None or name not in units:
        return "dex"  # the presets' targets and the BPT ratio equations
    return units[name] or "no unit"


def _equations_html(
    eqs: dict[str, Any], top: Sequence[str], units: dict[str, str] | None = None
) -> str:
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
        u = _esc(_unit(units, e["name"]))
        out.append(
            f"<details><summary>all {len(terms)} terms</summary>"
            + _table(
                ["feature", f"coefficient ({u} per A_f)", f"mean contribution ({u})"], trows, {1, 2}
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
    if "sae" in gt:
        models.append(("SAE top-k latents", gt["sae"]))
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


def sign_disagreements(row: pd.Series, eqs: dict[str, Any]) -> list[str]:
    """HTML notes for each target where a feature's weight and its correlation disagree in sign.

    ``row`` is the feature's ``features.csv`` row (``rho_<target>``: Spearman rho of A_f with
    the target; ``redundant_with``); ``eqs`` the run's equations. A positive weight with a
    negative rho (or the reverse) means the head uses the feature as a correction to the
    others that fire with it, not as a stand-alone indicator; its redundancy group names them.
    """
    lab = str(row["label"])
    out = []
    red = row.get("redundant_with")
    red = red if isinstance(red, str) and red else ""
    for e in eqs["equations"]:
        rho = row.get(f"rho_{e['name']}")
        term = next((t for t in e["terms"] if t["label"] == lab), None)
        if term is None or rho is None or not np.isfinite(rho) or abs(rho) < 0.1:
            continue
        w = float(term["coefficient"])
        if w * float(rho) >= 0:
            continue
        group = (
            f' It is redundant with <a href="#{_esc(red.split(", ")[0])}">{_esc(red)}</a>: '
            "read the group's weights together."
            if red
            else " It is not in a redundant group: the features that fire with it carry the "
            "positive part."
        )
        out.append(
            f"<b>Sign note:</b> {_esc(lab)}'s weight on {_esc(e['name'])} is {w:+.4f} per A_f, "
            f"but its A_f correlates {'positively' if rho > 0 else 'negatively'} with "
            f"{_esc(e['name'])} (Spearman ρ = {rho:+.2f}). The head uses it as a correction to "
            f"the features active with it, not as a stand-alone indicator." + group
        )
    return out


def _gt_line(gt: dict | None, lab: str) -> str:
    """The card's ground-truth line of unit ``lab`` (SFNet feature or SAE latent)."""
    for key in ("sfnet", "sae"):
        u = next((u for u in (gt or {}).get(key, {}).get("units", []) if u["unit"] == lab), None)
        if u:
            return (
                f"<p><b>Ground truth:</b> best factor <code>{_esc(u['best_factor'])}</code> "
                f"(ρ = {u['best_rho']:+.3f}), next <code>{_esc(u['second_factor'])}</code> "
                f"(ρ = {u['second_rho']:+.3f}); margin {u['margin']:.3f}</p>"
            )
    return ""


def _feature_card(
    run_dir: Path, s: dict[str, Any], row: pd.Series, gt: dict | None, left: str, notes: list
) -> str:
    """One frequent feature's card (SFNet feature or SAE latent): statistics, its top-galaxy
    figure and spatial maps, ``left`` (e.g. its equation weights), correlates, ground truth."""
    lab = str(row["label"])
    fig = s["figures"].get(f"feature_{lab}")
    maps = s["figures"].get(f"maps_{lab}")
    corr = row.get("correlates")
    tcorr = row.get("true_correlates")
    return (
        f'<div class="card" id="{_esc(lab)}"><h3>{_esc(lab)}</h3>'
        f"<p>f_activated = {100 * row['f_activated']:.1f}% · mean A_f = {row['mean_strength']:.3f}"
        f" · max activation = {row['max_activation']:.4g}</p>"
        + (_img(run_dir, fig, f"{lab}: BPT diagram and top activations") if fig else "")
        + (_img(run_dir, maps, f"{lab}: spatial maps on its top galaxies") if maps else "")
        + f'<div class="cols"><div>{left}</div><div>'
        + (f"<p><b>Catalog correlates:</b> {_esc(corr)}</p>" if isinstance(corr, str) else "")
        + (f"<p><b>True factors:</b> {_esc(tcorr)}</p>" if isinstance(tcorr, str) else "")
        + _gt_line(gt, lab)
        + "".join(f'<p class="note">{n}</p>' for n in notes)
        + "</div></div></div>"
    )


def _card_html(run_dir: Path, s: dict[str, Any], row: pd.Series, eqs: dict, gt: dict | None) -> str:
    lab = str(row["label"])
    wrows = []
    for e in eqs["equations"]:
        term = next((t for t in e["terms"] if t["label"] == lab), None)
        if term is not None:
            wrows.append(
                [
                    f"{_esc(e['name'])} [{_esc(_unit(s.get('units'), e['name']))}]",
                    _fmt(term["coefficient"], "+.4f"),
                    _fmt(term["mean_contribution"], "+.4f"),
                ]
            )
    weights = _table(
        ["equation [unit]", "weight (unit per A_f)", "mean contribution"], wrows, {1, 2}
    )
    return _feature_card(run_dir, s, row, gt, weights, sign_disagreements(row, eqs))


def _page(title: str, subtitle: str, sections: Sequence[str]) -> str:
    """A self-contained atlas page: header, the sections (HTML), no scripts."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1><p>{subtitle}</p></header><main>"
        + "".join(sections)
        + "</main></body></html>\n"
    )


def _histograms_html(run_dir: Path, s: dict[str, Any]) -> str:
    return (
        "<section><h2>Activation histograms</h2>"
        '<p class="muted">Distribution of A_f over the analysed galaxies where each feature '
        "fires.</p>"
        + (
            _img(run_dir, s["figures"]["histograms"], "histograms")
            if "histograms" in s["figures"]
            else ""
        )
        + "</section>"
    )


def render_report(run_dir: Path | str) -> str:
    """The HTML text of the feature atlas from an analysed run folder."""
    run_dir = Path(run_dir)
    path = run_dir / ANALYSIS
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: not analysed yet (run 'sfnet analyze {run_dir}')")
    s = json.loads(path.read_text())
    table = pd.read_csv(run_dir / FEATURES_TABLE)
    eqs = json.loads((run_dir / EQUATIONS_JSON).read_text())
    gt_path = run_dir / GROUNDTRUTH
    gt = json.loads(gt_path.read_text()) if gt_path.is_file() else None
    top = list(s["frequent_features"])
    cards = [
        _card_html(run_dir, s, row, eqs, gt)
        for _, row in table.iterrows()
        if str(row["label"]) in top
    ]
    title = f"sfnet feature atlas — {Path(s['run']).name}"
    body = [
        f"<section><h2>Run</h2>{_summary_html(s)}</section>",
        f"<section><h2>Training curves</h2>{_training_html(run_dir, s.get('units'))}"
        '<p class="muted">Logarithmic axes: one diverging early epoch does not hide the rest.'
        "</p></section>",
        "<section><h2>Features</h2>"
        '<p class="muted">Ranked by f_activated (share of analysed galaxies where the feature '
        "is non-zero). A_f = activation / max of that feature. Correlates: Spearman ρ of A_f "
        "with catalog columns.</p>" + _feature_table_html(table) + "</section>",
        f"<section><h2>Variance explained by the top features</h2>{_variance_html(s)}</section>",
        f"<section><h2>Redundant features</h2>{_redundancy_html(s)}</section>",
        f'<section><h2>Frequent features</h2><div class="cards">{"".join(cards)}</div></section>',
        _histograms_html(run_dir, s),
        "<section><h2>Equations</h2>"
        + _img(run_dir, s["figures"]["equations"], "equations figure")
        + _equations_html(eqs, top, s.get("units"))
        + "</section>",
        "<section><h2>Correlation of feature activations</h2>"
        + _img(run_dir, s["figures"]["correlation"], "correlation matrix")
        + "</section>",
        f"<section><h2>Ground-truth interpretability</h2>{_gt_html(gt)}</section>",
        f'<p class="muted">Analysis took {s.get("seconds", 0):.1f} s · model {_esc(s["model_sha"])}'
        "</p>",
    ]
    subtitle = f"{_esc(s['target'])} · k = {s['k']} · frequent features: {_esc(', '.join(top))}"
    return _page(title, subtitle, body)


# ------------------------------------------------------------------ SAE latents (issue 22)


def _sae_summary_html(s: dict[str, Any]) -> str:
    cfg = s.get("config", {})
    info = [
        ("input", _esc(s["input"])),
        ("dictionary", f"{s['n_latents']} latents on {s['d']} features, k = {s['k']} active"),
        ("training", f"{s.get('n_train')} galaxies, {cfg.get('steps')} Adam steps"),
        ("train FVU", _fmt(s.get("train_fvu"), ".4f")),
        ("validation FVU", _fmt(s.get("val_fvu"), ".4f")),
        ("latents never active (training)", _fmt(100 * (s.get("dead_fraction") or 0), ".1f") + "%"),
        ("latents active (validation)", f"{s['n_active_latents']} of {s['n_latents']}"),
        ("SAE-k validation RMSE", _fmt(s.get("sae_rmse"))),
        ("analysed", f"{s['n_analysed']} validation galaxies"),
        ("spatial maps", _esc(s["maps"])),
    ]
    return _table(["", ""], [[f"<b>{_esc(a)}</b>", b] for a, b in info], set())


def render_sae_report(sae_dir: Path | str) -> str:
    """The HTML latent atlas of an SAE folder written by
    :func:`sfnet.workflows.sparsity.sae_feature_pages`: the same cards, tables and figures as
    an SFNet run's feature atlas (no equations: the SAE has no head of its own)."""
    sae_dir = Path(sae_dir)
    if not (sae_dir / LATENTS_SUMMARY).is_file():
        raise RunFolderError(f"{sae_dir}: no {LATENTS_SUMMARY} (written by 'sfnet compare')")
    s = json.loads((sae_dir / LATENTS_SUMMARY).read_text())
    table = pd.read_csv(sae_dir / LATENTS_TABLE)
    top = list(s["frequent_features"])
    gt = s.get("groundtruth")
    note = "post-hoc TopK sparse autoencoder on the dense CNN's features"
    cards = [
        _feature_card(sae_dir, s, row, gt, f'<p class="muted">{note}</p>', [])
        for _, row in table.iterrows()
        if str(row["label"]) in top
    ]
    body = [
        f"<section><h2>Sparse autoencoder</h2>{_sae_summary_html(s)}</section>",
        "<section><h2>Latents</h2>"
        '<p class="muted">Ranked by f_activated on the validation galaxies. A_f = code / max '
        "of that latent. Correlates: Spearman ρ of A_f with catalog columns.</p>"
        + _feature_table_html(table)
        + "</section>",
        f"<section><h2>Redundant latents</h2>{_redundancy_html(s)}</section>",
        f'<section><h2>Frequent latents</h2><div class="cards">{"".join(cards)}</div></section>',
        _histograms_html(sae_dir, s),
        "<section><h2>Correlation of latent activations</h2>"
        + _img(sae_dir, s["figures"]["correlation"], "correlation matrix")
        + "</section>",
        f"<section><h2>Ground-truth interpretability</h2>{_gt_html(gt)}</section>",
    ]
    title = f"sfnet SAE latent atlas — {sae_dir.name}"
    subtitle = f"{_esc(s['target'])} · k = {s['k']} · frequent latents: {_esc(', '.join(top))}"
    return _page(title, subtitle, body)


def write_sae_report(sae_dir: Path | str) -> Path:
    """Write ``report.html`` into an SAE folder (:func:`render_sae_report`); return its path."""
    from sfnet.io import atomic_write_bytes

    out = Path(sae_dir) / REPORT
    atomic_write_bytes(out, render_sae_report(sae_dir).encode("utf-8"))
    return out


def write_comparison_atlas(
    folder: Path | str, pages: Sequence[tuple[str, str, str]], interpretability: str = ""
) -> Path:
    """``atlas.html`` of a comparison folder: links to the feature atlases of both kinds of
    sparsity, side by side, the RMSE-vs-k figure and the interpretability table.

    Args:
        folder: the comparison folder.
        pages: (target, SFNet run atlas, SAE latent atlas) paths relative to ``folder``.
        interpretability: the text of ``interpretability.md`` (shown as is).
    """
    from sfnet.io import atomic_write_bytes

    folder = Path(folder)

    def link(rel: str) -> str:
        if not (folder / rel).is_file():
            return f'<span class="muted">({_esc(rel)} missing)</span>'
        return f'<a href="{_esc(rel)}">{_esc(rel)}</a>'

    rows = [[_esc(t), link(a), link(b)] for t, a, b in pages]
    body = [
        "<section><h2>Feature atlases</h2>"
        '<p class="muted">Built-in sparsity (SFNet: TopK trained with the target) and post-hoc '
        "sparsity (a TopK sparse autoencoder on the dense CNN's features), at the same k, "
        "with the same pages: top galaxies, spatial maps, histograms, correlates.</p>"
        + _table(["target", "SFNet features", "SAE latents"], rows, set())
        + "</section>",
        "<section><h2>Validation RMSE vs k</h2>"
        + _img(folder, "rmse_vs_k.png", "RMSE vs k")
        + '<p class="muted">Tables: comparison.md, interpretability.md.</p></section>',
        "<section><h2>Interpretability, scored the same way for every method</h2>"
        f"<pre>{_esc(interpretability)}</pre></section>",
    ]
    out = folder / "atlas.html"
    page = _page(f"sfnet comparison atlas — {folder.name}", _esc(str(folder)), body)
    atomic_write_bytes(out, page.encode("utf-8"))
    return out
