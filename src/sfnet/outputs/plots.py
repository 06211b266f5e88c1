"""Figures of the feature analysis (matplotlib, Agg; PNG by default, PDF on request).

- :func:`plot_feature` — the paper's per-feature figure: the BPT diagram of all galaxies coloured
  by A_f (bpt_lines runs) beside a 3x3 grid of the most strongly activating galaxies.
- :func:`plot_correlation_matrix` — correlation of the frequent features' activations.
- :func:`plot_equations` — each equation as intercept + sum of w_f x (top galaxy of feature f).
- :func:`plot_feature_maps` — the top-activating grid with the feature's spatial map overlaid.
- :func:`plot_activation_histograms` — A_f where each feature fires.
- :func:`plot_explanation` — one galaxy: contribution maps, waterfall, its active features.
- :func:`training_curves_figure` — train loss, validation RMSE and learning rate per epoch
  (the report embeds it).

``plot_feature``, ``plot_correlation_matrix`` and ``plot_equations``
save the Figure that the matching ``*_figure(...)`` returns (for notebooks, where a returned
Figure displays inline); the map, histogram and explanation figures are written directly.

Figures are built on :class:`matplotlib.figure.Figure` objects (no pyplot global state) and
written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from sfnet.io import atomic_write
from sfnet.physics import kauffmann_curve, kewley_curve

#: Black (zero) -> dark magenta (low) -> bright yellow (high), as in the paper's BPT panels.
ACTIVATION_CMAP = LinearSegmentedColormap.from_list(
    "sfnet_activation", ["#000000", "#5c0a5c", "#b0208c", "#f0603c", "#ffe93a"]
)


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix: .png or .pdf) atomically."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))
    return path


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 -> (H, W, 3) for imshow."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {img.shape}")
    return np.transpose(img, (1, 2, 0))


def draw_bpt(ax, x: np.ndarray, y: np.ndarray, strength: np.ndarray, label: str = "") -> object:
    """BPT scatter coloured by A_f (strongest drawn on top) with the demarcation curves.

    Args:
        x: (N,) log [NII]/Halpha; y: (N,) log [OIII]/Hbeta; strength: (N,) A_f in [0, 1].
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    s = np.asarray(strength, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(s)
    order = np.argsort(s[ok], kind="stable")
    n = int(ok.sum())
    size = 3.0 if n > 20000 else 6.0 if n > 2000 else 12.0
    sc = ax.scatter(
        x[ok][order], y[ok][order], c=s[ok][order], cmap=ACTIVATION_CMAP, vmin=0, vmax=1,
        s=size, linewidths=0, rasterized=True,
    )  # fmt: skip
    lo = float(np.nanpercentile(x[ok], 0.5)) - 0.2 if ok.any() else -1.5
    hi = float(np.nanpercentile(x[ok], 99.5)) + 0.2 if ok.any() else 0.5
    lo, hi = min(lo, -1.3), max(hi, 0.3)
    xk = np.linspace(lo, 0.0, 200)
    xw = np.linspace(lo, 0.4, 200)
    ax.plot(xk, kauffmann_curve(xk), "--", color="0.35", lw=1.2, label="Kauffmann+03")
    ax.plot(xw, kewley_curve(xw), "-", color="0.35", lw=1.2, label="Kewley+01")
    ylo = float(np.nanpercentile(y[ok], 0.5)) - 0.2 if ok.any() else -1.2
    yhi = float(np.nanpercentile(y[ok], 99.5)) + 0.2 if ok.any() else 1.2
    ax.set_xlim(lo, hi)
    ax.set_ylim(min(ylo, -1.2), max(yhi, 1.0))
    ax.set_xlabel(r"log [NII] $\lambda$6584 / H$\alpha$")
    ax.set_ylabel(r"log [OIII] $\lambda$5007 / H$\beta$")
    ax.set_facecolor("0.93")
    ax.legend(loc="lower left", fontsize=7, frameon=False)
    if label:
        ax.set_title(label)
    return sc


def draw_grid(
    fig: Figure, spec, images: np.ndarray, strengths: np.ndarray, title: str = ""
) -> None:
    """3x3 galaxy thumbnails with their A_f in a subplot spec (empty cells left blank)."""
    sub = spec.subgridspec(3, 3, wspace=0.04, hspace=0.04)
    for i in range(9):
        ax = fig.add_subplot(sub[i // 3, i % 3])
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(images):
            ax.imshow(to_rgb(images[i]), interpolation="nearest")
            ax.text(
                0.04, 0.96, f"{strengths[i]:.2f}", transform=ax.transAxes, color="white",
                fontsize=7, va="top", ha="left",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
            )  # fmt: skip
        else:
            ax.set_facecolor("0.9")
        if i == 1 and title:
            ax.set_title(title, fontsize=10)


def plot_feature(path: Path, *args, **kwargs) -> Path:
    """Write :func:`feature_figure` to ``path`` (.png or .pdf); the other arguments are its."""
    return save_figure(feature_figure(*args, **kwargs), path)


def feature_figure(
    label: str,
    images: np.ndarray,
    strengths: np.ndarray,
    bpt: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    f_activated: float | None = None,
) -> Figure:
    """One feature: optional BPT panel (x, y, A_f) and the 3x3 grid of its top galaxies.

    Args:
        label: feature label (SL17).
        images: (n <= 9, 3, H, W) uint8, strongest first.
        strengths: (n,) their A_f.
        bpt: (log [NII]/Ha (N,), log [OIII]/Hb (N,), A_f (N,)) of all galaxies, or None.
        f_activated: shown in the title when given.
    """
    title = label if f_activated is None else f"{label}  (f_activated = {f_activated:.1%})"
    if bpt is None:
        fig = Figure(figsize=(4.2, 4.4))
        gs = fig.add_gridspec(1, 1)
        draw_grid(fig, gs[0, 0], images, strengths, title)
    else:
        fig = Figure(figsize=(9.6, 4.4))
        gs = fig.add_gridspec(1, 2, width_ratios=[1.15, 1.0], wspace=0.25)
        ax = fig.add_subplot(gs[0, 0])
        sc = draw_bpt(ax, *bpt, label=title)
        fig.colorbar(sc, ax=ax, label=f"A_{label}", fraction=0.046, pad=0.02)
        draw_grid(fig, gs[0, 1], images, strengths, "top activations")
    return fig


def plot_correlation_matrix(path: Path, corr: np.ndarray, labels: Sequence[str]) -> Path:
    """Write :func:`correlation_figure` to ``path``."""
    return save_figure(correlation_figure(corr, labels), path)


def correlation_figure(corr: np.ndarray, labels: Sequence[str]) -> Figure:
    """(m, m) correlation matrix (Pearson r, -1..1) as an annotated heat map; m labels."""
    corr = np.asarray(corr, dtype=np.float64)
    m = len(labels)
    size = 1.6 + 0.55 * m
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(m), labels, rotation=45, ha="right")
    ax.set_yticks(range(m), labels)
    if m <= 16:
        for i in range(m):
            for j in range(m):
                color = "white" if abs(corr[i, j]) > 0.6 else "black"
                ax.text(
                    j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color
                )
    fig.colorbar(im, ax=ax, label="Pearson r of activations", fraction=0.046, pad=0.04)
    ax.set_title("Correlation of feature activations")
    return fig


def plot_equations(path: Path, rows: Sequence, images: dict[str, np.ndarray]) -> Path:
    """Write :func:`equations_figure` to ``path``."""
    return save_figure(equations_figure(rows, images), path)


def equations_figure(
    rows: Sequence[tuple[str, float, Sequence[tuple[str, float]]]],
    images: dict[str, np.ndarray],
) -> Figure:
    """Equations as pictures: ``name = intercept + w1 x [img] + w2 x [img] ...``.

    Args:
        rows: per equation (display name, intercept, [(feature label, coefficient), ...]).
        images: feature label -> (3, H, W) uint8 top-activating galaxy.
    """
    n_terms = max((len(t) for _, _, t in rows), default=1)
    row_h = 1.25
    width = 3.2 + 2.05 * n_terms
    fig = Figure(figsize=(width, 0.3 + row_h * max(len(rows), 1)))
    height = fig.get_figheight()
    img_w = 0.95 / width
    for r, (name, intercept, terms) in enumerate(rows):
        yc = 1.0 - (0.15 + row_h * (r + 0.5)) / height
        fig.text(0.01, yc, f"{name} = {intercept:.3f}", fontsize=11, va="center", ha="left")
        x = 2.9 / width
        for label, coef in terms:
            sign = "−" if coef < 0 else "+"
            fig.text(x, yc, f"{sign} {abs(coef):.3f} ×", fontsize=11, va="center", ha="left")
            x += 0.95 / width
            ax = fig.add_axes(
                (x, yc - 0.5 * (row_h - 0.25) / height, img_w, (row_h - 0.25) / height)
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if label in images:
                ax.imshow(to_rgb(images[label]), interpolation="nearest")
            ax.set_xlabel(f"A_{label}", fontsize=8, labelpad=1)
            x += 1.1 / width
    return fig


def overlay_map(ax, image: np.ndarray, heat: np.ndarray, vmax: float, cmap=None) -> object:
    """A galaxy with a translucent activation map on top (opacity rises with the map value).

    Args:
        image: (3, H, W) uint8; heat: (H, W) map upsampled to the image (>= 0); vmax: the
            value drawn fully coloured.
    """
    ax.imshow(to_rgb(image), interpolation="nearest")
    norm = np.clip(np.asarray(heat, np.float64) / vmax, 0, 1) if vmax > 0 else np.zeros_like(heat)
    im = ax.imshow(norm, cmap=cmap or "inferno", vmin=0, vmax=1, alpha=0.55 * norm)
    ax.contour(norm, levels=[0.5], colors="white", linewidths=0.6)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def plot_feature_maps(
    path: Path,
    label: str,
    images: np.ndarray,
    maps: np.ndarray,
    strengths: np.ndarray,
    resolution: str,
) -> Path:
    """3x3 top-activating galaxies, each with the feature's spatial map overlaid.

    Args:
        images: (n <= 9, 3, H, W) uint8, strongest first.
        maps: (n, H, W) the feature's maps upsampled to the cutout (activation units).
        strengths: (n,) A_f of each galaxy.
        resolution: the maps' native grid, e.g. ``'5x5 at 144 px'`` (shown on the figure).
    """
    fig = Figure(figsize=(4.2, 4.7))
    gs = fig.add_gridspec(3, 3, wspace=0.04, hspace=0.04)
    vmax = float(np.max(maps)) if len(maps) else 1.0
    for i in range(9):
        ax = fig.add_subplot(gs[i // 3, i % 3])
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(images):
            ax.set_facecolor("0.9")
            continue
        overlay_map(ax, images[i], maps[i], vmax)
        ax.text(
            0.04, 0.96, f"{strengths[i]:.2f}", transform=ax.transAxes, color="white",
            fontsize=7, va="top", ha="left",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0},
        )  # fmt: skip
    fig.suptitle(f"{label}: where it fires", fontsize=10, y=0.99)
    fig.text(
        0.5, 0.045, f"map {resolution}; cell centres every 32 px from the top-left pixel",
        ha="center", fontsize=7, color="0.3",
    )  # fmt: skip
    return save_figure(fig, path)


def plot_activation_histograms(
    path: Path, strengths: dict[str, np.ndarray], frequency: dict[str, float]
) -> Path:
    """One histogram per feature of A_f over the galaxies where it fires.

    Args:
        strengths: label -> (n_f,) A_f in (0, 1] of the galaxies where the feature is active.
        frequency: label -> f_activated (shown in each title).
    """
    n = max(len(strengths), 1)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(2.6 * cols, 2.1 * rows))
    bins = np.linspace(0, 1, 26)
    for i, (lab, a) in enumerate(strengths.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.hist(np.asarray(a, np.float64), bins=bins, color="#b0208c")
        ax.set_title(f"{lab}  (fires on {frequency.get(lab, np.nan):.1%})", fontsize=8)
        ax.set_xlabel("A_f where active", fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def draw_waterfall(
    ax, intercept: float, steps: Sequence[tuple[str, float]], measured: float | None, name: str
) -> None:
    """Horizontal waterfall: intercept, + each feature's contribution, = prediction (physical)."""
    level = float(intercept)
    labels = ["intercept"]
    ax.barh(0, level, color="0.75")
    for i, (lab, c) in enumerate(steps, start=1):
        ax.barh(i, c, left=level, color="#c0392b" if c >= 0 else "#2e6fb0")
        level += c
        labels.append(f"{lab} ({c:+.3f})")
    ax.barh(len(steps) + 1, level, color="#5c0a5c")
    labels.append(f"prediction {level:.3f}")
    if measured is not None and np.isfinite(measured):
        ax.axvline(measured, color="k", ls="--", lw=1, label=f"measured {measured:.3f}")
        ax.legend(fontsize=6, loc="lower right", frameon=False)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.yaxis.tick_right()
    ax.invert_yaxis()
    lo = min(intercept, level, measured if measured is not None else level)
    hi = max(intercept, level, measured if measured is not None else level)
    span = max(hi - lo, 1e-3) + sum(abs(c) for _, c in steps)
    ax.set_xlim(lo - 0.6 * span, hi + 0.6 * span)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_title(name, fontsize=8)


def _draw_feature_row(fig: Figure, gs, r: int, image: np.ndarray, row: tuple, vmax: float) -> None:
    """Row r of :func:`plot_explanation`: map on the galaxy, caption, 3 top galaxies."""
    lab, caption, heat, tops = row
    overlay_map(fig.add_subplot(gs[r, 0]), image, heat, vmax)
    fig.axes[-1].set_title(f"{lab} on this galaxy", fontsize=7)
    cap = fig.add_subplot(gs[r, 1])
    cap.axis("off")
    cap.text(0.0, 0.5, caption, fontsize=7, va="center", ha="left", transform=cap.transAxes)
    for j in range(3):
        ax = fig.add_subplot(gs[r, 2 + j])
        ax.set_xticks([])
        ax.set_yticks([])
        if j < len(tops):
            ax.imshow(to_rgb(tops[j]), interpolation="nearest")
            if j == 0:
                ax.set_title(f"top galaxies of {lab}", fontsize=7, loc="left")
        else:
            ax.set_facecolor("0.9")


def plot_explanation(
    path: Path,
    title: str,
    image: np.ndarray,
    target_names: Sequence[str],
    contribution_maps: np.ndarray,
    waterfalls: Sequence[tuple[float, Sequence[tuple[str, float]], float | None]],
    features: Sequence[tuple[str, str, np.ndarray, np.ndarray]],
    resolution: str,
) -> Path:
    """One galaxy explained: cutout, contribution maps, waterfalls, and each active feature.

    Args:
        image: (3, H, W) uint8 cutout.
        contribution_maps: (T, H, W) upsampled contribution maps (physical units).
        waterfalls: per target (intercept, [(feature label, contribution)], measured or None).
        features: per active feature (label, caption, (H, W) its upsampled map on this galaxy,
            (m <= 3, 3, H, W) top-activating galaxies of the run's analysis).
        resolution: native map grid, e.g. ``'5x5 at 144 px'``.
    """
    T = len(target_names)
    ncol = max(5, 4 + T)
    nrow = 1 + max(len(features), 1)
    fig = Figure(figsize=(2.0 * ncol, 2.1 * nrow))
    gs = fig.add_gridspec(nrow, ncol, wspace=0.25, hspace=0.45)
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(to_rgb(image), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("cutout", fontsize=8)
    lim = float(np.max(np.abs(contribution_maps))) if contribution_maps.size else 1.0
    for t, name in enumerate(target_names):
        ax = fig.add_subplot(gs[0, 1 + t])
        ax.imshow(to_rgb(image).mean(axis=2), cmap="gray", interpolation="nearest")
        im = ax.imshow(contribution_maps[t], cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.6)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"contribution to {name}", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    wf = gs[0, 2 + T :].subgridspec(T, 1, hspace=0.9)
    for t, (icpt, steps, measured) in enumerate(waterfalls):
        draw_waterfall(fig.add_subplot(wf[t, 0]), icpt, steps, measured, target_names[t])
    vmax = max((float(np.max(m)) for _, _, m, _ in features), default=1.0)
    for r, row in enumerate(features, start=1):
        _draw_feature_row(fig, gs, r, image, row, vmax)
    fig.suptitle(
        f"{title}\nmaps {resolution} (cell centres every 32 px from the top-left)", fontsize=9
    )
    return save_figure(fig, path)


def training_curves_figure(metrics: Sequence[dict]) -> Figure:
    """Training curves from ``metrics.jsonl`` records: train loss, validation RMSE, learning rate.

    Args:
        metrics: one dict per epoch with ``epoch``, ``train_loss`` (RMSE of standardized
            targets), ``val_rmse`` (target name -> RMSE in physical units, dex) and ``lr``,
            as :func:`sfnet.runs.read_metrics` returns them.

    Returns:
        A Figure with three panels sharing the epoch axis (empty panels when no records).

    Example:
        >>> fig = training_curves_figure(read_metrics("runs/demo/metrics.jsonl"))
    """
    epochs = [int(r["epoch"]) for r in metrics]
    fig = Figure(figsize=(10.5, 3.0))
    axes = fig.subplots(1, 3)
    axes[0].plot(epochs, [r["train_loss"] for r in metrics], "o-", ms=3, color="#5c0a5c")
    axes[0].set_ylabel("train loss (standardized RMSE)")
    names = list(metrics[0]["val_rmse"]) if metrics else []
    for name in names:
        axes[1].plot(epochs, [r["val_rmse"][name] for r in metrics], "o-", ms=3, label=name)
    axes[1].set_ylabel("validation RMSE (dex)")
    if names:
        axes[1].legend(fontsize=7, frameon=False)
    axes[2].plot(epochs, [r.get("lr", np.nan) for r in metrics], "o-", ms=3, color="#f0603c")
    axes[2].set_ylabel("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
