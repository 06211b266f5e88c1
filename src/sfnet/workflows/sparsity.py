"""Built-in against post-hoc sparsity inside ``sfnet compare``: the SAE-k column and the
interpretability table (issue 22).

For each k of the sweep and each repeat r, a TopK sparse autoencoder (:mod:`sfnet.analysis.sae`,
seed = compare seed + r) is trained on the training galaxies' dense CNN pooled features (or the
``--features`` file), saved in ``FOLDER/sae/<target>_k<k>_r<r>/`` (reused when its settings
match), and a ridge regression (penalty by leave-one-out CV) of the targets on its k-sparse
codes is scored on the validation split: the SAE-k column of Table 2.

Interpretability, scored the same way for every method and k (:func:`interpretability_rows`):
the k units of each method (SFNet: its k most frequent features' A_f; SAE: its k most frequent
latents; PCA: the top-k principal components; neurons: the k most variable dense neurons) against
the factors (synthetic survey: the ``true_*`` columns; real data: the measured catalog columns,
targets included), with

- ``best_abs_rho`` / ``margin``: each unit's best |Spearman rho| with a factor and its margin over
  the second best (:mod:`sfnet.analysis.groundtruth`), averaged over the k units, validation set;
- DCI (gradient boosting fitted on the training split, informativeness = mean R^2 on validation)
  and MIG (validation), :mod:`sfnet.analysis.disentangle`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from sfnet.analysis.metrics import group_rmse, rmse

log = logging.getLogger(__name__)

SAE_DIR = "sae"
#: Methods of the interpretability table, in display order.
METHODS = ("sfnet", "sae", "pca", "neurons")
METHOD_TITLES = {
    "sfnet": "SFNet (built-in TopK)",
    "sae": "SAE on dense features (post-hoc TopK)",
    "pca": "PCA of dense features",
    "neurons": "raw dense neurons",
}
SCORES = (
    "best_abs_rho",
    "margin",
    "disentanglement",
    "completeness",
    "informativeness",
    "mig",
)


def sparse_regression(
    codes_train: np.ndarray, y_train: np.ndarray, codes_val: np.ndarray, y_val: np.ndarray
) -> np.ndarray:
    """Validation RMSE per target (T,) of a ridge regression on sparse codes (N, n_latents),
    its penalty chosen by leave-one-out CV on the training split (a plain least-squares fit
    would interpolate: there are more latents than training galaxies)."""
    from sklearn.linear_model import RidgeCV

    keep = (codes_train != 0).any(axis=0)  # latents never active on train carry nothing
    reg = RidgeCV(alphas=np.logspace(-4, 3, 15)).fit(codes_train[:, keep], y_train)
    return rmse(reg.predict(codes_val[:, keep]), y_val)


def _sae_config(cfg: Any, k: int, repeat: int) -> Any:
    from sfnet.analysis.sae import SAEConfig

    return SAEConfig(
        k=int(k), expansion=cfg.sae_expansion, steps=cfg.sae_steps, seed=cfg.seed + repeat
    )


def ensure_sae(x_train: np.ndarray, folder: Path, sae_cfg: Any) -> tuple[Any, bool]:
    """The SAE saved in ``folder`` when its settings and input dimension match, else a new one
    trained on ``x_train`` and saved there. Returns (model, reused)."""
    from sfnet.analysis.sae import SparseAutoencoder
    from sfnet.errors import RunFolderError

    try:
        old = SparseAutoencoder.load(folder)
        same_input = old.d == x_train.shape[1] and old.meta.get("n_train") == len(x_train)
        if old.config == sae_cfg and same_input:
            return old, True
    except RunFolderError:
        pass
    model = SparseAutoencoder.fit(x_train, sae_cfg)
    model.save(folder)
    return model, False


def sae_tables(
    t: Any, x: np.ndarray, folder: Path, cfg: Any
) -> tuple[pd.DataFrame, dict[tuple[int, int], np.ndarray]]:
    """SAE-k of one target group: per (k, repeat) the validation RMSE of a ridge regression on
    the codes, the SAE's validation FVU and dead fraction; and the codes (N, n_latents) of all
    galaxies, by (k, repeat).

    Args:
        t: the target group's data (``compare._TargetData``: y, tr, va, data.target_names).
        x: (N, d) the features the SAE encodes (dense pooled features or the --features file).
        folder: the comparison folder.
        cfg: the :class:`~sfnet.config.CompareConfig`.
    """
    rows, codes = [], {}
    names = t.data.target_names
    for r in range(cfg.repeats):
        for k in cfg.ks:
            sae_cfg = _sae_config(cfg, k, r)
            where = folder / SAE_DIR / f"{t.target}_k{k}_r{r}"
            model, reused = ensure_sae(x[t.tr], where, sae_cfg)
            c = model.encode(x)
            per = sparse_regression(c[t.tr], t.y[t.tr], c[t.va], t.y[t.va])
            row = {
                "target": t.target,
                "k": int(k),
                "repeat": r,
                "seed": sae_cfg.seed,
                "n_latents": model.n_latents,
                "sae_rmse": float(group_rmse(per)),
                "val_fvu": model.fvu(x[t.va]),
                "train_fvu": float(model.meta.get("train_fvu", np.nan)),
                "dead_fraction": float(model.meta.get("dead_fraction", np.nan)),
                "reused": reused,
            }
            row.update({f"sae_rmse_{n}": float(v) for n, v in zip(names, per, strict=True)})
            rows.append(row)
            codes[(int(k), r)] = c
    return pd.DataFrame(rows), codes


def sae_summary(sae: pd.DataFrame) -> pd.DataFrame:
    """Per (target, k): SAE-k mean and s.e. of the group RMSE over the repeats."""
    from sfnet.workflows.compare import mean_se

    rows = []
    for (target, k), g in sae.groupby(["target", "k"], sort=True):
        m, se = mean_se(g["sae_rmse"].to_numpy())
        rows.append({"target": target, "k": int(k), "sae_mean": m, "sae_se": se})
    return pd.DataFrame(rows, columns=["target", "k", "sae_mean", "sae_se"])


def factor_table(
    catalog: pd.DataFrame, target: str, images: Any = None
) -> tuple[pd.DataFrame, str]:
    """The factors to score interpretability against, and their kind.

    - Synthetic survey (``true_*`` columns): the true factors, kind ``true``.
    - Real data: kind ``measured``: every numeric catalog column except identifiers and
      positions, ``*_err`` columns and the columns the target is computed from (a unit that
      tracks the target is predictive, not yet interpretable), plus, when ``images``
      (N, 3, H, W) are given, the stand-ins measured on the cutouts
      (:func:`sfnet.analysis.photometry.image_measurements`: ``img_gr_colour``,
      ``img_r50_px``, ``img_axis_ratio``). A catalog such as ``examples/sdss-metallicity-400``
      (objID and oh_p50 only) is then scored against the image measurements alone.

    Returns an empty table (no columns) when there is nothing to score against.
    """
    from sfnet.analysis.activations import interpretable_columns
    from sfnet.analysis.groundtruth import true_factor_columns
    from sfnet.data.catalog import target_columns, target_names

    cols = true_factor_columns(catalog)
    if cols:
        return catalog[cols].astype(np.float64), "true"
    skip = set(target_columns(target)) | set(target_names(target))
    cols = [c for c in interpretable_columns(catalog) if c not in skip and not c.startswith("log_")]
    factors = catalog[cols].astype(np.float64).reset_index(drop=True)
    if images is not None and len(images):
        from sfnet.analysis.photometry import image_measurements

        measured = image_measurements(images)
        factors = pd.concat([factors, measured.loc[:, measured.notna().sum() > 2]], axis=1)
    return factors, "measured"


def _frequent(values: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The k units most often non-zero on ``rows`` (ties by index)."""
    from sfnet.analysis.activations import rank_features

    return rank_features((values[rows] != 0).mean(axis=0), k)


def unit_score_row(
    units: np.ndarray,
    unit_names: Sequence[str],
    factors: pd.DataFrame,
    tr: np.ndarray,
    va: np.ndarray,
    seed: int = 0,
    n_trees: int = 50,
) -> dict[str, Any]:
    """The interpretability scores of ``units`` (N, p) against ``factors`` (N rows); DCI's
    regressors have ``n_trees`` trees (the comparison's ``dci_trees``)."""
    from sfnet.analysis.disentangle import scores
    from sfnet.analysis.groundtruth import factor_matches, summary

    f = factors.to_numpy(dtype=np.float64)
    ok = np.isfinite(f).all(axis=1)  # galaxies with every factor (an image may be unmeasurable)
    kept = np.cumsum(ok) - 1  # row of each kept galaxy in units[ok], f[ok]
    tr, va = tr[ok[tr]], va[ok[va]]
    matches = factor_matches(units[va], unit_names, factors.iloc[va])
    s = summary(matches)
    row: dict[str, Any] = {
        "units": " ".join(unit_names),
        "best_factors": " ".join(m.best_factor for m in matches),
        "best_abs_rho": s["mean_best_abs_rho"],
        "margin": s["mean_margin"],
    }
    if f.shape[1] >= 2 and units.shape[1] >= 1:
        row.update(scores(units[ok], f[ok], kept[tr], kept[va], seed=seed, n_estimators=n_trees))
    else:
        row.update({k: float("nan") for k in SCORES[2:]})
    return row


def interpretability_rows(
    t: Any,
    folder: Path,
    cfg: Any,
    sae_codes: dict[tuple[int, int], np.ndarray],
    sfnet_strengths: Any,
    factors: pd.DataFrame,
    kind: str,
) -> list[dict[str, Any]]:
    """method x k x repeat rows of interpretability scores for one target group.

    Args:
        t: the target group's data (``compare._TargetData``).
        folder: the comparison folder.
        cfg: the comparison settings.
        sae_codes: (k, repeat) -> SAE codes (N, n_latents) of all galaxies.
        sfnet_strengths: callable(run) -> (A_f (N, d) scaled, f_activated (d,)) of an SFNet.
        factors, kind: what :func:`factor_table` returned (no rows when it has no columns).
    """
    from sfnet.analysis.activations import feature_label
    from sfnet.analysis.groundtruth import dense_units
    from sfnet.runs import default_device, load_run

    if factors.shape[1] == 0:
        log.info("%s: nothing to score interpretability against (see factors.csv)", t.target)
        return []
    device = default_device(cfg.device)
    rows = []

    def add(method: str, k: int, r: int, units: np.ndarray, names: list[str]) -> None:
        row = {"target": t.target, "factors": kind, "method": method, "k": int(k), "repeat": r}
        row.update(
            unit_score_row(units, names, factors, t.tr, t.va, seed=cfg.seed, n_trees=cfg.dci_trees)
        )
        rows.append(row)

    for k in cfg.ks:
        log.info("interpretability %s k=%d", t.target, k)
        for r in range(cfg.repeats):
            run = load_run(folder / "runs" / f"{t.target}_k{k}_r{r}", device=device)
            strength, freq = sfnet_strengths(run)
            top = _frequent(strength, t.va, k)
            add("sfnet", k, r, strength[:, top], [feature_label(t.target, int(f)) for f in top])
            c = sae_codes[(int(k), r)]
            top = _frequent(c, t.va, k)
            add("sae", k, r, c[:, top], [latent_label(j) for j in top])
        pcs, pc_names, neurons, neuron_names = dense_units(t.feats[t.tr], t.feats, k, cfg.seed)
        add("pca", k, 0, pcs, pc_names)
        add("neurons", k, 0, neurons, neuron_names)
    return rows


def interpretability_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (target, method, k): each score's mean and s.e. over repeats."""
    from sfnet.workflows.compare import mean_se

    out = []
    if rows.empty:
        return pd.DataFrame()
    order = {m: i for i, m in enumerate(METHODS)}
    for (target, method, k), g in rows.groupby(["target", "method", "k"], sort=False):
        row: dict[str, Any] = {
            "target": target,
            "factors": g["factors"].iloc[0],
            "method": method,
            "k": int(k),
            "repeats": len(g),
        }
        for s in SCORES:
            m, se = mean_se(g[s].to_numpy(dtype=np.float64))
            row[s], row[f"{s}_se"] = m, se
        out.append(row)
    df = pd.DataFrame(out)
    df["_o"] = df["method"].map(order)
    return df.sort_values(["target", "k", "_o"]).drop(columns="_o").reset_index(drop=True)


def factor_row(target: str, factors: pd.DataFrame, kind: str) -> dict[str, Any]:
    """One row of ``factors.csv``: what a target group's units were scored against."""
    from sfnet.analysis.photometry import IMAGE_FACTORS
    from sfnet.data.catalog import target_columns

    cols = [str(c) for c in factors.columns]
    return {
        "target": target,
        "kind": kind,
        "n_factors": len(cols),
        "catalog_columns": " ".join(c for c in cols if c not in IMAGE_FACTORS),
        "image_columns": " ".join(c for c in cols if c in IMAGE_FACTORS),
        "target_columns": " ".join(target_columns(target)),
    }


def factors_markdown(factors: pd.DataFrame) -> str:
    """One plain sentence per target group: the factors its units were scored against, or
    that there were none (then it has no interpretability rows)."""
    lines = []
    for _, r in factors.iterrows():
        cat = r["catalog_columns"] if isinstance(r["catalog_columns"], str) else ""
        img = r["image_columns"] if isinstance(r["image_columns"], str) else ""
        if r["kind"] == "true":
            lines.append(f"- {r['target']}: the {r['n_factors']} true_* factors of the survey.")
        elif r["n_factors"] == 0:
            lines.append(
                f"- {r['target']}: **no interpretability scores**: the catalog has no numeric "
                f"column beyond the target ({r['target_columns']}) and no cutout could be "
                "measured."
            )
        else:
            cat = cat or f"none beyond the target ({r['target_columns']})"
            lines.append(
                f"- {r['target']}: {r['n_factors']} measured factors standing in for true ones: "
                f"catalog columns: {cat}; measured from the images (display colour, adaptive "
                f"moments, see sfnet.analysis.photometry): {img or 'none'}."
            )
    return "Scored against:\n\n" + "\n".join(lines) + "\n" if lines else ""


def interpretability_markdown(summary: pd.DataFrame) -> str:
    """method x k x score, mean ± s.e. over repeats (PCA and neurons are deterministic)."""
    if summary.empty:
        return "(no interpretability scores: nothing to score against, see above)\n"
    head = "| target | factors | k | method | " + " | ".join(SCORES) + " |"
    lines = [head, "|---" * (4 + len(SCORES)) + "|"]
    for _, r in summary.iterrows():
        cells = [r["target"], r["factors"], str(r["k"]), METHOD_TITLES.get(r["method"], "")]
        for s in SCORES:
            v, se = r[s], r[f"{s}_se"]
            cell = "n/a" if not np.isfinite(v) else f"{v:.3f}"
            if np.isfinite(v) and np.isfinite(se):
                cell += f" ± {se:.3f}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def latent_label(j: int) -> str:
    """The label of SAE latent ``j`` (``L17``), beside SFNet's ``Z61`` / ``SL17``."""
    return f"L{int(j)}"


#: Files of an SAE's latent atlas, beside ``sae.toml`` / ``sae.json`` / ``sae.safetensors``.
MAPS_NOTE = (
    "a latent's map is the encoder direction applied at each position of the trunk's last "
    "feature map: w_enc . (m_ij / scale - b_pre) + b_enc, whose pixel mean is the latent's "
    "pre-activation (as an SFNet feature map's pixel mean is its a_f); drawn where positive"
)


class LatentMaps(torch.nn.Module):
    """A dense network's last feature maps seen through an SAE's encoder.

    ``feature_maps(x)`` -> (N, n_latents, h, w): at each position (i, j) of the trunk's last
    feature map m_ij (d,), ``w_l . (m_ij / scale - b_pre) + b_enc_l`` with w_l the SAE's encoder
    row of latent l. The SAE encodes the pooled features x = mean_ij m_ij, and the encoder is
    affine, so the pixel mean of latent l's map is exactly its pre-activation before TopK: the
    same identity as an SFNet feature map's pixel mean and its pooled a_f. The encoder (not the
    decoder) direction is used because it is what decides whether and how strongly the latent
    fires; the decoder direction says what the latent writes back, which for a non-orthogonal
    dictionary is a different vector.
    """

    def __init__(self, dense_model: torch.nn.Module, sae: Any) -> None:
        super().__init__()
        self.net = dense_model
        self.sae = sae

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        sae = self.sae.to(x.device)
        m = self.net.feature_maps(x).float() / sae.scale - sae.b_pre[None, :, None, None]
        return torch.einsum("ld,ndhw->nlhw", sae.W_enc, m) + sae.b_enc[None, :, None, None]


@dataclass
class LatentRun:
    """A dense run seen through an SAE, shaped like a sparse run for the atlas code
    (:func:`sfnet.workflows.analyze.feature_pages`, :func:`sfnet.predict.spatial_features`):
    its features are the SAE's latents, its folder the SAE's."""

    dir: Path
    meta: Any  # target, k, d (= n_latents), normalization (the dense run's)
    model: LatentMaps | None  # None: the SAE reads a --features file, no spatial maps
    precision: Any


def latent_run(sae_dir: Path, sae: Any, dense: Any, maps: bool = True) -> LatentRun:
    """The :class:`LatentRun` of ``sae`` on the dense run ``dense`` (maps only when the SAE
    was trained on that run's pooled features)."""
    meta = SimpleNamespace(
        target=dense.meta.target,
        k=sae.k,
        d=sae.n_latents,
        normalization=dense.meta.normalization,
    )
    model = LatentMaps(dense.model, sae) if maps else None
    return LatentRun(Path(sae_dir), meta, model, dense.precision)


def sae_activations(codes: np.ndarray, rows: np.ndarray, objid: np.ndarray, k: int) -> Any:
    """The SAE codes of galaxies ``rows`` (codes (N, n_latents) of all galaxies) as
    :class:`~sfnet.analysis.activations.SparseActivations` (the k largest per galaxy)."""
    from sfnet.analysis.activations import SparseActivations

    rows = np.asarray(rows, dtype=np.int64)
    c = codes[rows]
    idx = np.argsort(-c, axis=1, kind="stable")[:, :k]
    vals = np.take_along_axis(c, idx, axis=1)
    return SparseActivations(objid[rows], rows, idx, vals, d=c.shape[1])


def sae_feature_pages(
    sae_dir: Path,
    sae: Any,
    codes: np.ndarray,
    t: Any,
    n_features: int,
    *,
    maps: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The latent atlas of an SAE, like an SFNet run's feature atlas, in ``sae_dir``:
    ``latents.csv`` (the feature table: label, f_activated, A statistics, catalog and true-
    factor correlates, redundant partners), ``figures/`` (per frequent latent its top-9 grid
    with a BPT panel where the catalog has the lines, ``maps_L<j>`` spatial maps through the
    encoder direction (:class:`LatentMaps`), histograms, correlation matrix),
    ``latents.json`` (the summary) and ``report.html``.

    Args:
        sae_dir: the SAE's folder.
        sae: the loaded :class:`~sfnet.analysis.sae.SparseAutoencoder`.
        codes: (N, n_latents) codes of all galaxies of ``t.data``.
        t: the target group (``compare._TargetData``: dense run, data, validation rows ``va``).
        n_features: how many of the most frequent latents get a card and figures.
        maps: draw spatial maps (only when the SAE encodes ``t.dense``'s pooled features).
        extra: more summary entries (e.g. the SAE-k RMSE), shown on the page.

    Statistics are taken on the validation galaxies; A = code / the latent's maximum there.
    """
    from sfnet.analysis.activations import correlation_matrix, feature_table
    from sfnet.analysis.groundtruth import sfnet_groundtruth
    from sfnet.analysis.redundancy import redundant_features
    from sfnet.io import atomic_write_json
    from sfnet.outputs.plots import plot_correlation_matrix
    from sfnet.outputs.report import LATENTS_SUMMARY, LATENTS_TABLE, write_sae_report
    from sfnet.outputs.tables import write_csv
    from sfnet.workflows.analyze import AnalysisOptions, feature_pages

    run = latent_run(sae_dir, sae, t.dense, maps)
    acts = sae_activations(codes, t.va, np.asarray(t.data.objid), sae.k)
    opts = AnalysisOptions(n_features=n_features, n_table=2 * n_features)
    a, strengths_top, figures = feature_pages(run, t.data, acts, opts, latent_label, maps)
    red = redundant_features(a.acts)
    table = feature_table(a.acts, a.table_feats, t.target, a.catalog, stats=a.stats)
    table["label"] = a.label_list(a.table_feats)
    table["redundant_with"] = [", ".join(a.label_list(red.partners(f))) for f in a.table_feats]
    write_csv(table, Path(sae_dir) / LATENTS_TABLE)
    corr = correlation_matrix(a.acts, a.table_feats)
    plot_correlation_matrix(a.dir / "figures" / "correlation.png", corr, table["label"])
    figures["correlation"] = "figures/correlation.png"
    gt = sfnet_groundtruth(strengths_top, a.label_list(a.top), a.catalog)
    summary = {
        "sae": str(sae_dir),
        "target": t.target,
        "k": sae.k,
        "d": sae.d,
        "n_latents": sae.n_latents,
        "input": f"pooled features of {t.dense.dir}" if maps else "the --features file",
        "n_train": sae.meta.get("n_train"),
        "train_fvu": sae.meta.get("train_fvu"),
        "dead_fraction": sae.meta.get("dead_fraction"),
        "config": sae.config.to_dict() if sae.config else {},
        "n_analysed": int(a.acts.n),
        "n_active_latents": len(a.ranked),
        "frequent_features": a.label_list(a.top),
        "redundancy": red.to_dict(a.labels),
        "groundtruth": {"sae": gt} if gt else None,
        "maps": MAPS_NOTE if maps else "none: the SAE reads a --features file, not this trunk",
        "figures": figures,
    } | (extra or {})
    atomic_write_json(Path(sae_dir) / LATENTS_SUMMARY, summary)
    write_sae_report(sae_dir)
    return summary
