"""Full feature analysis at the paper's scale: 250,000 galaxies, k = 4, no images.

Synthetic sparse activations (a few frequent features plus a long tail, some kept entries
inactive) with a random linear head, a catalog of 12 numeric columns and 10 ``true_*`` factors.
Times every step of ``sfnet analyze`` that does not need images or a network: statistics,
ranking, scaled strengths, equations (and their check against the head's predictions),
variance explained for m = 1..2k, the feature table with Spearman correlations, the correlation
matrix, ground truth, redundant-feature groups and activation histograms, the k BPT figures
(no galaxy images) and writing activations.npz / equations / features.csv. Spatial feature maps
need images and a network; ``analyze`` computes them only for the drawn galaxies (9 per frequent
feature), independent of N, so they are not part of this benchmark.

Last line: ``analysis_s=<x> peak_mb=<y>`` (peak resident memory of the process).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from sfnet.analysis.activations import (
    SparseActivations,
    active_strengths,
    correlation_matrix,
    dense_columns,
    feature_label,
    feature_stats,
    feature_table,
    rank_features,
    scaled_strength,
    top_activating,
    variance_explained,
)
from sfnet.analysis.equations import build_equations, write_equations
from sfnet.analysis.groundtruth import sfnet_groundtruth
from sfnet.analysis.redundancy import redundant_features
from sfnet.outputs.plots import plot_activation_histograms, plot_feature
from sfnet.physics import bpt_ratios

N, K, D, T = 250_000, 4, 512, 4
LINES = ["log_nii_6584_flux", "log_h_alpha_flux", "log_oiii_5007_flux", "log_h_beta_flux"]


def synthetic(rng: np.random.Generator):
    # frequent features first (like the paper's 95.8%, 87%, 62.9%, ...), then a long tail
    p = np.concatenate([[40, 30, 20, 20, 8, 6, 4, 3], np.full(D - 8, 0.05)])
    p /= p.sum()
    idx = np.empty((N, K), dtype=np.int16)
    for j in range(K):  # distinct features per row: redraw collisions
        col = rng.choice(D, N, p=p)
        for _ in range(20):
            clash = (idx[:, :j] == col[:, None]).any(axis=1)
            if not clash.any():
                break
            col[clash] = rng.choice(D, int(clash.sum()), p=p)
        idx[:, j] = col
    vals = rng.gamma(2.0, 0.5, (N, K)).astype(np.float32)
    vals[rng.random((N, K)) < 0.03] = 0.0  # kept by TopK but not active
    acts = SparseActivations(np.arange(N, dtype=np.int64), np.arange(N), idx, vals, d=D)
    w = rng.normal(0, 0.3, (T, D))
    b = rng.normal(0, 0.1, T)
    mean, std = np.array([1.5, 2.0, 0.8, 1.4]), np.array([0.4, 0.3, 0.5, 0.25])
    sparse_pred = b + (w[:, idx.astype(np.intp)] * np.where(vals > 0, vals, 0)).sum(-1).T
    acts.predictions = (mean + std * sparse_pred).astype(np.float32)
    y = acts.predictions + rng.normal(0, 0.2, (N, T)).astype(np.float32)
    cat = pd.DataFrame({f"col{i}": rng.normal(size=N) for i in range(12)})
    for i in range(10):
        cat[f"true_f{i}"] = rng.normal(size=N)
    return acts, w, b, mean, std, y, cat


def _checks(stats, ranked, top, var, err, gt, red) -> list[str]:
    """What the analysis found (sanity checks of the synthetic set), one line each."""
    return [
        f"features ever active: {len(ranked)}; top-{K} f_activated: "
        + ", ".join(f"{stats.frequency[f]:.1%}" for f in top),
        f"top-{K} share of prediction variance: {var.r2_prediction[K - 1].mean():.4f}",
        f"equations max |error| vs head predictions: {err:.2e} dex",
        f"ground truth mean best |rho| (random factors): {gt['mean_best_abs_rho']:.3f}",
        f"redundancy: {len(red.features)} features compared, {len(red.groups)} groups, "
        f"{red.n_effective} effective",
    ]


def main() -> int:
    rng = np.random.default_rng(0)
    acts, w, b, mean, std, y, cat = synthetic(rng)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        steps = {}

        def step(name: str, t: float) -> float:
            now = time.perf_counter()
            steps[name] = now - t
            return now

        t = time.perf_counter()
        acts.save(out / "activations.npz")
        acts = SparseActivations.load(out / "activations.npz")
        t = step("save+load", t)
        stats = feature_stats(acts)
        ranked = rank_features(stats.frequency)
        top, table_feats = ranked[:K], ranked[: 2 * K]
        t = step("stats", t)
        labels = {int(f): feature_label("bpt_lines", f) for f in range(D)}
        eqs = build_equations(acts, w, b, mean, std, LINES, labels)
        values = eqs.evaluate(acts)
        err = max(
            float(np.abs(values[n] - acts.predictions[:, i]).max()) for i, n in enumerate(LINES)
        )
        write_equations(eqs, out)
        t = step("equations", t)
        var = variance_explained(dense_columns(acts, table_feats), acts.predictions, y, table_feats)
        t = step("variance_explained", t)
        table = feature_table(acts, table_feats, "bpt_lines", cat, stats=stats)
        table.to_csv(out / "features.csv", index=False)
        t = step("feature_table", t)
        correlation_matrix(acts, table_feats)
        for f in top:
            top_activating(acts, int(f), 9)
        gt = sfnet_groundtruth(
            scaled_strength(acts, top, stats.max), [labels[int(f)] for f in top], cat
        )
        t = step("corr+top9+groundtruth", t)
        red = redundant_features(acts)
        hist = {labels[int(f)]: active_strengths(acts, int(f), stats.max[int(f)]) for f in top}
        plot_activation_histograms(out / "histograms.png", hist, {})
        t = step("redundancy+histograms", t)
        x_bpt, y_bpt = bpt_ratios(y)
        strengths = scaled_strength(acts, top, stats.max)
        blank = np.full((9, 3, 64, 64), 128, np.uint8)
        for j, f in enumerate(top):
            plot_feature(
                out / f"feature_{f}.png", labels[int(f)], blank, np.ones(9),
                (x_bpt, y_bpt, strengths[:, j]),
            )  # fmt: skip
        t = step(f"{K} BPT figures (N points)", t)
        total = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 1024**2
    for name, s in steps.items():
        print(f"{name:>24s}: {s:6.2f} s")
    print("\n".join(_checks(stats, ranked, top, var, err, gt, red)))
    print(f"analysis_s={total:.2f} peak_mb={peak_mb:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
