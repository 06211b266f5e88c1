"""``sfnet reproduce``: the paper's numbers next to sfnet's, on any dataset, in one folder.

Trains (or reuses) everything :mod:`sfnet.workflows.compare` trains for the paper's Table 2 (the k sweep x
repeats and the dense CNN of each target group the data supports), takes repeat 0 of k = 4 as the
paper's model of each group (both published models use k = 4; the paper's recipe), analyses it
with the paper's definitions (:mod:`sfnet.analysis.paper`) and writes

``FOLDER/``
  everything ``sfnet compare`` writes (``runs/``, ``table_rmse.csv``, ``probes.csv``, ...)
  ``paper_vs_sfnet.csv``  one row per number the paper publishes: its value, sfnet's value on
                          the data, and how sfnet's value was computed (or why it is absent)
  ``paper_vs_sfnet.md``   the same as a page

Resumable: finished runs are reused (see :func:`sfnet.workflows.compare.run_comparison`). Each step is
logged (``logging``, loggers ``sfnet.workflows.reproduce`` and ``sfnet.workflows.compare``) at INFO level.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfnet.config import PAPER_PRETRAINED, TARGETS, DataConfig
from sfnet.errors import DataError
from sfnet.io import atomic_write_bytes
from sfnet.workflows.compare import CompareConfig, check_comparison_folder, run_comparison

log = logging.getLogger(__name__)

#: The k of both published models.
PAPER_MODEL_K = 4
#: Quick settings (besides compare's --quick ks 2 4, 1 repeat, 2 epochs).
QUICK_PROBE_TREES = 20
TABLE2_KS = (2, 3, 4, 6, 8)
#: Table 2 of the paper: k -> (SFNet mean, s.e., PCA) per target group.
TABLE2 = {
    "metallicity": {
        2: (0.0858, 0.0004, 0.1753),
        3: (0.0862, 0.0011, 0.2032),
        4: (0.0862, 0.0013, 0.1034),
        6: (0.0875, 0.0007, 0.1020),
        8: (0.0852, 0.0004, 0.0921),
    },
    "bpt_lines": {
        2: (0.2418, 0.0002, 0.2806),
        3: (0.2395, 0.0014, 0.2646),
        4: (0.2383, 0.0003, 0.2646),
        6: (0.2394, 0.0009, 0.2419),
        8: (0.2389, 0.0012, 0.2396),
    },
}
#: Table 1: f_activated of the most frequent features of each k = 4 model, most frequent first
#: (the metallicity model's 3rd and 4th are from the text: 40.2 % and 11.9 %).
TABLE1 = {
    "bpt_lines": [("SL157", 0.958), ("SL138", 0.870), ("SL17", 0.629), ("SL322", 0.629)],
    "metallicity": [("Z61", 0.996), ("Z256", 0.879), ("3rd", 0.402), ("4th", 0.119)],
}
SAMPLE_SIZE = {"bpt_lines": 250207, "metallicity": 117223}
#: The paper cell of a number sfnet adds (e.g. the SAE-k baseline of issue 22).
NOT_IN_PAPER = "not in the paper"
COLUMNS = ["section", "target", "quantity", "paper", "sfnet", "paper_value", "sfnet_value", "how"]


@dataclass
class ReproduceResult:
    """What :func:`run_reproduce` wrote: the table and the targets it could / could not run."""

    folder: Path
    table: pd.DataFrame
    targets: list[str]
    absent: dict[str, str]


def available_targets(data: str, crop: int, resize: int | None) -> tuple[list[str], dict[str, str]]:
    """The target groups ``data`` supports, and for the others why not (the loader's error)."""
    from sfnet.data.dataset import load_dataset

    ok, absent = [], {}
    for t in TARGETS:
        try:
            load_dataset(DataConfig(path=data, target=t, crop=crop, resize=resize))
            ok.append(t)
        except DataError as e:
            absent[t] = str(e)
    return ok, absent


def compare_config(data: str, targets: list[str], quick: bool, **overrides: Any) -> CompareConfig:
    """The comparison settings of a reproduction: compare's, with k = 4 always in the sweep."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if quick:
        given.setdefault("probe_trees", QUICK_PROBE_TREES)
    given.setdefault("recipe", "paper")  # the published recipe (sfnet train's default is stable)
    cfg = CompareConfig.create(quick=quick, path=data, targets=tuple(targets), **given)
    if PAPER_MODEL_K not in cfg.ks:
        cfg.ks = tuple(sorted({*cfg.ks, PAPER_MODEL_K}))
    return cfg


def model_activations(run: Any, data: Any, done: Any = None) -> dict[str, np.ndarray]:
    """Pooled (pre-TopK) and post-TopK activations and predictions of all galaxies, each (N, .),
    from one forward pass over the galaxies.

    Args:
        done: ``(objID, Predictions with pooled features)`` of a pass already made over these
            galaxies (:func:`sfnet.workflows.compare.run_comparison`'s ``passes``); used when
            its objIDs are ``data``'s, in order, else the model is run here.
    """
    from sfnet.predict import predict

    if done is not None and np.array_equal(done[0], np.asarray(data.objid)):
        out = done[1]
    else:
        out = predict(run, data.images, pooled=True)
    post = np.zeros_like(out.pooled, dtype=np.float64)
    np.put_along_axis(post, out.indices, np.maximum(out.values, 0.0), axis=1)
    return {"pre": out.pooled.astype(np.float64), "post": post, "pred": out.predictions}


def paper_model_numbers(run: Any, data: Any, done: Any = None) -> dict[str, Any]:
    """The paper's numbers for one k = 4 model, on its validation split.

    Returns a dict with ``freq`` / ``ranked`` (per statistics ``pre`` / ``post``), ``masked``
    (m -> stats -> group RMSE of the masked trained head), ``refit`` (m -> group RMSE of a
    least-squares head refitted on the top m post-TopK-ranked features), ``share`` (m -> stats ->
    variance share), ``model_rmse`` (group RMSE of the full model) and the activations
    (``done``: see :func:`model_activations`).
    """
    from sfnet.analysis.activations import rank_features, variance_explained
    from sfnet.analysis.metrics import group_rmse
    from sfnet.analysis.paper import masked_head_predictions, masked_head_rmse, variance_share

    acts = model_activations(run, data, done)
    tr, va = run.split(len(data))
    y = np.asarray(data.y, dtype=np.float64)[va]
    w, b = run.head()
    mean, std = np.asarray(run.meta.target_mean), np.asarray(run.meta.target_std)
    res: dict[str, Any] = {"acts": acts, "train": tr, "val": va, "freq": {}, "ranked": {}}
    for s in ("pre", "post"):
        res["freq"][s] = (acts[s][va] > 0).mean(axis=0)
    res["ranked"]["post"] = rank_features(res["freq"]["post"])
    res["ranked"]["pre"] = rank_features(res["freq"]["pre"], tie_break=res["freq"]["post"])
    res["masked"], res["share"], res["refit"] = {}, {}, {}
    for m in (2, 4, 8):
        res["masked"][m], res["share"][m] = {}, {}
        for s in ("pre", "post"):
            feats = res["ranked"][s][:m]
            p = masked_head_predictions(acts["post"][va], w, b, feats, mean, std)
            res["masked"][m][s] = float(group_rmse(masked_head_rmse(p, y)))
            res["share"][m][s] = variance_share(acts[s][va], feats)
    top = res["ranked"]["post"][:8]
    var = variance_explained(acts["post"][va][:, top], acts["pred"][va], y, top)
    for m in (2, 4):
        if var.rmse is not None and m <= len(var.rmse):
            res["refit"][m] = float(group_rmse(var.rmse[m - 1]))
    res["model_rmse"] = float(group_rmse(masked_head_rmse(acts["pred"][va], y)))
    res["scatter"] = float(np.sqrt(((y - y.mean(axis=0)) ** 2).mean()))
    return res


def agn_numbers(res: dict[str, Any], data: Any, seed: int = 0) -> dict[str, Any]:
    """AGN accuracy / F1 of LinearSVC on the top-4 and on all active features (pre and post).

    Raises:
        DataError: no bptclass or line fluxes in the catalog, or a class missing.
    """
    from sfnet.analysis.paper import agn_classes, paper_agn_svm

    classes, source = agn_classes(data.catalog)
    tr, va = res["train"], res["val"]
    out: dict[str, Any] = {"source": source}
    for s in ("pre", "post"):
        x = res["acts"][s]
        for name, feats in (("top", res["ranked"][s][:4]), ("all", res["ranked"][s])):
            out[(name, s)] = paper_agn_svm(x[tr], classes[tr], x[va], classes[va], feats, seed)
    return out


def _row(section: str, target: str, quantity: str, paper: str, pv: float, sv: Any, how: str):
    sval = float(sv) if isinstance(sv, int | float | np.floating) and np.isfinite(sv) else None
    return {
        "section": section,
        "target": target,
        "quantity": quantity,
        "paper": paper,
        "sfnet": sv if isinstance(sv, str) else _num(sval),
        "paper_value": pv,
        "sfnet_value": sval,
        "how": how,
    }


def _num(v: float | None, nd: int = 4) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


def _pct(v: float | None, nd: int = 1) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.{nd}f} %"


def _absent(rows: list[dict], why: str) -> list[dict]:
    """The same rows with sfnet's value replaced by the reason it is absent."""
    return [{**r, "sfnet": f"absent: {why}", "sfnet_value": None} for r in rows]


def table1_rows(target: str, res: dict[str, Any] | None, label: Callable[[int], str]) -> list:
    """Table 1 (and the metallicity text): f_activated of the 1st..4th most frequent features."""
    rows = []
    for r, (name, pv) in enumerate(TABLE1[target]):
        q = f"f_activated of the #{r + 1} most frequent feature of the k=4 model (paper: {name})"
        if res is None:
            rows.append(_row("Table 1", target, q, _pct(pv), pv, "", ""))
            continue
        rk = res["ranked"]
        pre = rk["pre"][r] if r < len(rk["pre"]) else None
        post = rk["post"][r] if r < len(rk["post"]) else None
        sv = res["freq"]["pre"][pre] if pre is not None else float("nan")
        how = (
            f"{label(pre) if pre is not None else '-'}: pooled features before TopK, non-zero = "
            "activated (the paper's notebooks; ties by post-TopK frequency), validation split, "
            "repeat-0 k=4 run; post-TopK "
            f"#{r + 1}: {label(post) if post is not None else '-'} "
            f"{_pct(res['freq']['post'][post]) if post is not None else 'n/a'}"
        )
        row = _row("Table 1", target, q, _pct(pv), pv, float(sv), how)
        row["sfnet"] = f"{_pct(sv)} ({label(pre)})" if pre is not None else "n/a"
        rows.append(row)
    return rows


def model_rows(target: str, res: dict[str, Any] | None) -> list[dict]:
    """Masked-head RMSEs, the model's RMSE, the target scatter, variance shares."""
    rows = []
    if target == "metallicity":
        for m, pv in ((2, 0.087), (4, 0.086)):
            sv = res["masked"][m]["pre"] if res else None
            how = (
                f"trained head on the top {m} features (pre-TopK frequency ranking, ties by "
                "post-TopK frequency), every other "
                "feature zeroed, no refit; validation split"
                + (
                    f"; post-TopK ranking {_num(res['masked'][m]['post'])}; sfnet's least-"
                    f"squares refit on the top {m}: {_num(res['refit'].get(m))}"
                    if res
                    else ""
                )
            )
            q = f"RMSE [dex] with the top {m} features of the k=4 model"
            rows.append(_row("Results", target, q, f"{pv:.3f}", pv, sv, how))
        q = "scatter of the metallicity [dex]"
        sv = res["scatter"] if res else None
        rows.append(_row("Results", target, q, "0.207", 0.207, sv, "std of oh_p50, validation"))
    else:
        sv = res["model_rmse"] if res else None
        how = "validation RMSE of the repeat-0 k=4 run over the four log fluxes (Table 2 range)"
        q = "RMSE of the k=4 spectral-line model"
        rows.append(_row("Results", target, q, "0.238-0.242", 0.2383, sv, how))
        for m, pv in ((8, 0.9999), (4, 0.916)):
            sv = res["share"][m]["pre"] if res else None
            how = (
                f"sum of the variances of the top {m} features' activations / the same sum over "
                "all 512 (pooled pre-TopK features, pre-TopK frequency ranking; validation)"
                + (f"; post-TopK activations: {_pct(res['share'][m]['post'], 2)}" if res else "")
            )
            q = f"variance explained by the {m} most frequent features"
            row = _row("Results", target, q, _pct(pv, 2), pv, sv, how)
            row["sfnet"] = _pct(sv, 2) if sv is not None else ""
            rows.append(row)
    return rows


def table2_rows(target: str, table: pd.DataFrame | None, pca_var: pd.DataFrame | None) -> list:
    """Every Table 2 cell of one group, and the variance of the top 8 principal components."""
    rows = []
    for k in TABLE2_KS:
        m, se, pca = TABLE2[target][k]
        got = None
        if table is not None and not table.empty:
            sel = table[(table["target"] == target) & (table["k"] == k)]
            got = sel.iloc[0] if len(sel) else None
        why = "" if got is not None or table is None else "absent: k not in this sweep"
        sv = got["sfnet_mean"] if got is not None else why
        row = _row("Table 2", target, f"SFNet RMSE, k={k}", f"{m:.4f} ± {se:.4f}", m, sv, "")
        if got is not None:
            se_txt = f" ± {_num(got['sfnet_se'])}" if np.isfinite(got["sfnet_se"]) else ""
            row["sfnet"] = _num(got["sfnet_mean"]) + se_txt
            row["how"] = f"mean ± s.e. over {int(got['repeats'])} repeat(s), validation RMSE"
        rows.append(row)
        sv = got["pca_rmse"] if got is not None else why
        how = "linear regression on the top k PCs of the dense CNN's pooled features"
        rows.append(_row("Table 2", target, f"PCA RMSE, k={k}", f"{pca:.4f}", pca, sv, how))
        if got is not None and "sae_mean" in got.index:  # issue 22: post-hoc sparsity
            how = "ridge on the k-sparse codes of a TopK SAE on the dense CNN's pooled features"
            se = f" ± {_num(got['sae_se'])}" if np.isfinite(got["sae_se"]) else ""
            row = _row("Table 2", target, f"SAE RMSE, k={k}", NOT_IN_PAPER, np.nan, 0.0, how)
            row["sfnet"], row["sfnet_value"] = _num(got["sae_mean"]) + se, float(got["sae_mean"])
            rows.append(row)
    sv = None
    if pca_var is not None and not pca_var.empty:
        sel = pca_var[(pca_var["target"] == target) & (pca_var["component"] == 8)]
        sv = float(sel["cumulative"].iloc[0]) if len(sel) else None
    q = "variance explained by the top 8 principal components"
    row = _row("Table 2", target, q, "> 95 %", 0.95, sv, "dense CNN features, training split")
    row["sfnet"] = _pct(sv) if sv is not None else ""
    rows.append(row)
    return rows


def agn_rows(agn: dict[str, Any] | None, why: str = "") -> list[dict]:
    """AGN accuracy and F1: top-4 features (0.85 / 0.72) and all non-zero features (0.83 / 0.70)."""
    rows = []
    spec = (
        ("top", "the 4 most frequent features", 0.85, 0.72),
        ("all", "all non-zero", 0.83, 0.70),
    )
    for name, what, acc, f1 in spec:
        for metric, pv in (("accuracy", acc), ("F1", f1)):
            q = f"AGN {metric}, LinearSVC on {what} features"
            if agn is None:
                rows.append(_row("AGN", "bpt_lines", q, f"{pv:.2f}", pv, why, ""))
                continue
            pre, post = agn[(name, "pre")], agn[(name, "post")]
            get = (lambda r: r.accuracy) if metric == "accuracy" else (lambda r: r.f1)
            how = (
                f"pre-TopK activations of {len(pre.features)} feature(s); labels: "
                f"{agn['source']}; SF = bptclass 1,2, AGN = 4,5, composites excluded; "
                f"{pre.n_train} train / {pre.n_val} validation galaxies; post-TopK: "
                f"{get(post):.3f}"
            )
            rows.append(_row("AGN", "bpt_lines", q, f"{pv:.2f}", pv, get(pre), how))
    return rows


PROBES = (
    ("linear", "train", 0.183, "linear model fitted on the training split"),
    ("linear", "val", 0.181, "linear model fitted on the validation split (memorisation)"),
    ("xgboost", "train", 0.180, "XGBoost fitted on the training split"),
    ("xgboost", "val", 0.085, "XGBoost fitted on the validation split (memorisation)"),
)
PROBE_R2 = ((0, "Z61", 0.253), (1, "Z256", 0.107))


def probe_rows(probes: pd.DataFrame | None, feats: pd.DataFrame | None, why: str = "") -> list:
    """Probes from another CNN's features (the paper: Zoobot; here: the dense CNN or --features)."""
    rows = []
    src_note = "features of sfnet's dense CNN (the paper used Zoobot's; pass --features for them)"
    for model, fit_on, pv, what in PROBES:
        q = f"metallicity RMSE [dex] of a {what}"
        sv: Any = why
        if probes is not None and not probes.empty:
            sel = probes[
                (probes["target"] == "metallicity")
                & (probes["model"] == model)
                & (probes["fit_on"] == fit_on)
                & probes["source"].str.startswith("dense CNN")
            ]
            sv = float(sel["rmse"].iloc[0]) if len(sel) else "absent: no probe"
        rows.append(_row("Probes", "metallicity", q, f"{pv:.3f}", pv, sv, src_note))
    for rank, name, pv in PROBE_R2:
        q = f"ridge R^2 from other features to the #{rank + 1} SFNet feature (paper: {name})"
        sv, how = why, src_note
        if feats is not None and not feats.empty:
            sel = feats[
                (feats["target"] == "metallicity") & feats["source"].str.startswith("dense CNN")
            ]
            if len(sel) > rank:
                r = sel.iloc[rank]
                sv = float(r["r2"])
                how = f"{r['label']} (post-TopK rank {rank + 1}, A_f scale); {src_note}"
            else:
                sv = "absent: fewer frequent features"
        rows.append(_row("Probes", "metallicity", q, f"{pv:.3f}", pv, sv, how))
    return rows


def sample_rows(target: str, n: int | None, why: str = "") -> list[dict]:
    q = "galaxies after the target's quality cuts"
    pv = SAMPLE_SIZE[target]
    sv: Any = float(n) if n is not None else why
    row = _row("Sample", target, q, f"{pv:,}", float(pv), sv, "rows of the catalog kept")
    if n is not None:
        row["sfnet"] = f"{n:,}"
    return [row]


def build_table(
    targets: list[str],
    absent: dict[str, str],
    results: dict[str, dict[str, Any]],
    compare: Any,
    agn: dict[str, Any] | None,
    agn_why: str,
    label: Callable[[str, int], str],
) -> pd.DataFrame:
    """All rows, in the paper's order; rows of an absent target group say why."""
    rows: list[dict] = []
    for t in ("bpt_lines", "metallicity"):
        res = results.get(t)
        part = sample_rows(t, res["n"] if res else None)
        part += table1_rows(t, res, lambda f, t=t: label(t, int(f)))
        part += model_rows(t, res)
        if t not in targets:
            part = _absent(part, f"no {t} target in this data ({absent.get(t, '')})")
        rows += part
    if "bpt_lines" in targets:
        rows += agn_rows(agn, agn_why)
    else:
        rows += _absent(agn_rows(None), "no bpt_lines target in this data")
    for t in ("metallicity", "bpt_lines"):
        part = table2_rows(
            t,
            compare.table if compare is not None else None,
            compare.pca_variance if compare is not None else None,
        )
        rows += part if t in targets else _absent(part, f"no {t} target in this data")
    if "metallicity" in targets:
        rows += probe_rows(compare.probes, compare.probe_features)
    else:
        rows += _absent(probe_rows(None, None), "no metallicity target in this data")
    return pd.DataFrame(rows, columns=COLUMNS)


def _analyse_paper_models(
    folder: Path, targets: list[str], cfg: CompareConfig, passes: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, str]:
    """Paper numbers of each group's repeat-0 k = 4 run, and the AGN scores (or why absent);
    ``passes``: the comparison's forward passes (each model runs once over its galaxies)."""
    from sfnet.runs import default_device, load_run

    results: dict[str, dict[str, Any]] = {}
    agn, agn_why = None, ""
    for t in targets:
        log.info("paper analysis of %s_k%d_r0", t, PAPER_MODEL_K)
        run_dir = folder / "runs" / f"{t}_k{PAPER_MODEL_K}_r0"
        run = load_run(run_dir, default_device(cfg.device))
        data = run.data()
        res = paper_model_numbers(run, data, passes.pop(str(run_dir.resolve()), None))
        res["n"] = len(data)
        if t == "bpt_lines":
            try:
                agn = agn_numbers(res, data, seed=cfg.seed)
            except DataError as e:
                agn_why = f"absent: {e}"
        res.pop("acts")
        results[t] = res
    return results, agn, agn_why


def paper_table_markdown(table: pd.DataFrame, header: list[str]) -> str:
    """The table as a markdown page: header lines, then one table per section."""
    from sfnet.outputs.tables import markdown_table

    out = [*header, ""]
    cols = ["target", "quantity", "paper", "sfnet", "how"]
    for section, g in table.groupby("section", sort=False):
        out += [f"## {section}", "", *markdown_table(cols, (r[cols] for _, r in g.iterrows())), ""]
    return "\n".join(out)


def run_reproduce(
    folder: Path,
    data: str,
    *,
    quick: bool = False,
    pretrained: str | None = PAPER_PRETRAINED,
    progress: bool = False,
    **overrides: Any,
) -> ReproduceResult:
    """Train (or reuse) the paper's models and comparison on ``data``; write the paper table.

    Args:
        folder: output folder (created; rerunning reuses finished runs).
        data: dataset folder or ``.npz``.
        quick: compare's quick sweep (ks 2 4, 1 repeat, 2 epochs) and 20-tree probes.
        pretrained: ``imagenet`` (the paper), None (random init) or a weights path.
        overrides: further :class:`sfnet.workflows.compare.CompareConfig` fields (ks, epochs, crop, ...).
    """
    from sfnet.analysis.activations import feature_label

    folder = Path(folder)
    check_comparison_folder(folder)  # before the Zoobot features are written into it
    crop = overrides.get("crop") or DataConfig().crop
    targets, absent = available_targets(data, crop, overrides.get("resize"))
    for t, why in absent.items():
        log.info("%s: not in this data (%s); its rows say so", t, why)
    if not targets:
        raise DataError(f"{data}: no target group can be trained: {absent}")
    if overrides.get("features") == "zoobot":  # the paper's probe features, computed here
        from sfnet.workflows.embed import ZOOBOT, EmbedConfig, embed_to_file

        out = folder / "zoobot_features.parquet"
        if not out.is_file():
            import torch

            dev = overrides.get("device")
            if dev not in ("cpu", "cuda"):
                dev = "cuda" if torch.cuda.is_available() else "cpu"
            emb = EmbedConfig(path=str(data), crop=crop, device=dev)
            embed_to_file(ZOOBOT, emb, out)  # no cached weights, no network: one line, how to
        overrides["features"] = str(out)
    cfg = compare_config(data, targets, quick, pretrained=pretrained, **overrides)
    passes: dict[str, Any] = {}  # the analysed runs' forward passes, reused, never repeated
    comp = run_comparison(folder, cfg, progress=progress, passes=passes)
    results, agn, agn_why = _analyse_paper_models(folder, targets, cfg, passes)
    table = build_table(targets, absent, results, comp, agn, agn_why, feature_label)
    atomic_write_bytes(
        folder / "paper_vs_sfnet.csv", table.to_csv(index=False, float_format="%.6g").encode()
    )
    header = [
        "# The paper's numbers next to sfnet's",
        "",
        f"Data: `{data}`; targets: {', '.join(targets)}; init: {pretrained or 'random'}; "
        f"ks: {list(cfg.ks)}; repeats: {cfg.repeats}; epochs: {cfg.epochs}; crop: {cfg.run.data.crop}; "
        f"resize: {cfg.run.data.resize}{' (quick)' if quick else ''}; recipe: "
        f"{cfg.run.train.recipe}"
        + (
            " (as published; `sfnet train` defaults to the stable recipe)."
            if cfg.run.train.recipe == "paper"
            else "."
        ),
        "The paper's models are the repeat-0 k=4 runs (`runs/<target>_k4_r0`); the paper's "
        "values are from Wu (2025) on 250,207 / 117,223 SDSS galaxies.",
    ]
    header += [f"- `{t}` rows are absent: {why}" for t, why in absent.items()]
    atomic_write_bytes(folder / "paper_vs_sfnet.md", paper_table_markdown(table, header).encode())
    return ReproduceResult(folder=folder, table=table, targets=targets, absent=absent)


__all__ = [
    "PAPER_MODEL_K",
    "ReproduceResult",
    "available_targets",
    "build_table",
    "compare_config",
    "paper_model_numbers",
    "run_reproduce",
]
