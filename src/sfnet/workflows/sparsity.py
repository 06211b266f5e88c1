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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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


def factor_table(catalog: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The factors to score against and their kind: ``true_*`` columns (synthetic survey) or,
    on real data, every measured numeric catalog column (targets included)."""
    from sfnet.analysis.activations import interpretable_columns
    from sfnet.analysis.groundtruth import true_factor_columns

    cols = true_factor_columns(catalog)
    if cols:
        return catalog[cols].astype(np.float64), "true"
    cols = [c for c in interpretable_columns(catalog) if not c.startswith("log_")]
    return catalog[cols].astype(np.float64), "measured"


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
) -> dict[str, Any]:
    """The interpretability scores of ``units`` (N, p) against ``factors`` (N rows)."""
    from sfnet.analysis.disentangle import scores
    from sfnet.analysis.groundtruth import factor_matches, summary

    f = factors.to_numpy(dtype=np.float64)
    ok = np.isfinite(f).all(axis=1)
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
        row.update(scores(units, f, tr, va, seed=seed))
    else:
        row.update({k: float("nan") for k in SCORES[2:]})
    return row


def interpretability_rows(
    t: Any,
    folder: Path,
    cfg: Any,
    sae_codes: dict[tuple[int, int], np.ndarray],
    sfnet_strengths: Any,
) -> list[dict[str, Any]]:
    """method x k x repeat rows of interpretability scores for one target group.

    Args:
        t: the target group's data (``compare._TargetData``).
        folder: the comparison folder.
        cfg: the comparison settings.
        sae_codes: (k, repeat) -> SAE codes (N, n_latents) of all galaxies.
        sfnet_strengths: callable(run) -> (A_f (N, d) scaled, f_activated (d,)) of an SFNet.
    """
    from sfnet.analysis.activations import feature_label
    from sfnet.analysis.groundtruth import dense_units
    from sfnet.runs import default_device, load_run

    factors, kind = factor_table(t.data.catalog.reset_index(drop=True))
    if factors.shape[1] == 0:
        log.info("%s: no catalog columns to score interpretability against", t.target)
        return []
    device = default_device(cfg.device)
    rows = []

    def add(method: str, k: int, r: int, units: np.ndarray, names: list[str]) -> None:
        row = {"target": t.target, "factors": kind, "method": method, "k": int(k), "repeat": r}
        row.update(unit_score_row(units, names, factors, t.tr, t.va, seed=cfg.seed))
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
            add("sae", k, r, c[:, top], [f"L{int(j)}" for j in top])
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


def interpretability_markdown(summary: pd.DataFrame) -> str:
    """method x k x score, mean ± s.e. over repeats (PCA and neurons are deterministic)."""
    if summary.empty:
        return "(no catalog columns to score against)\n"
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


def sae_feature_pages(
    sae_dir: Path,
    codes: np.ndarray,
    data: Any,
    rows: np.ndarray,
    n_features: int,
) -> pd.DataFrame:
    """Feature pages of an SAE's most frequent latents, like an SFNet run's: one figure per
    latent with its 9 most activating galaxies (``figures/feature_L<j>.png``), the histograms of
    its strength where it fires (``figures/histograms.png``) and ``latents.csv`` (label,
    f_activated, strongest Spearman rho with each catalog column).

    Args:
        sae_dir: the SAE's folder (figures go to ``sae_dir/figures``).
        codes: (N, n_latents) codes of all galaxies of ``data``.
        data: the galaxies (``GalaxyData``: images, catalog).
        rows: the galaxies the statistics are taken on (the validation split).
        n_features: how many of the most frequent latents get a page.

    Strength A = code / the latent's maximum over ``rows`` (in (0, 1] where it fires). No
    spatial maps: the SAE reads pooled features, and a latent's map through its encoder
    direction is only meaningful at image sizes with more than one map cell.
    """
    from sfnet.analysis.activations import interpretable_columns, spearman_with_catalog
    from sfnet.io import atomic_write_bytes
    from sfnet.outputs.plots import plot_activation_histograms, plot_feature

    rows = np.asarray(rows)
    c = codes[rows]
    top = _frequent(codes, rows, n_features)
    freq = (c != 0).mean(axis=0)
    cmax = np.where(c.max(axis=0) > 0, c.max(axis=0), 1.0)
    fig_dir = Path(sae_dir) / "figures"
    hist, hfreq, table = {}, {}, []
    catalog = data.catalog.iloc[rows].reset_index(drop=True)
    cols = interpretable_columns(catalog)
    rho = spearman_with_catalog(c[:, top] / cmax[top], catalog, cols) if cols else None
    for i, j in enumerate(top):
        lab = latent_label(j)
        order = np.argsort(-c[:, j], kind="stable")[:9]
        order = order[c[order, j] > 0]
        imgs = np.asarray(data.images[np.sort(rows[order])])
        imgs = imgs[np.argsort(np.argsort(rows[order]))]  # back to strongest-first
        plot_feature(
            fig_dir / f"feature_{lab}.png",
            lab,
            imgs,
            c[order, j] / cmax[j],
            f_activated=float(freq[j]),
        )
        active = c[:, j] > 0
        hist[lab], hfreq[lab] = c[active, j] / cmax[j], float(freq[j])
        row: dict[str, Any] = {"latent": int(j), "label": lab, "f_activated": float(freq[j])}
        if rho is not None:
            best = np.argsort(-np.abs(np.nan_to_num(rho[i])))[:3]
            row["top_columns"] = ", ".join(f"{cols[b]} ({rho[i][b]:+.2f})" for b in best)
        table.append(row)
    if hist:
        plot_activation_histograms(fig_dir / "histograms.png", hist, hfreq)
    df = pd.DataFrame(table)
    atomic_write_bytes(
        Path(sae_dir) / "latents.csv", df.to_csv(index=False, float_format="%.6g").encode()
    )
    return df
