"""Figures of the feature analysis (matplotlib, Agg; PNG by default, PDF on request).

- :func:`plot_feature` — the paper's per-feature figure: the BPT diagram of all galaxies coloured
  by A_f (bpt_lines runs) beside a 3x3 grid of the most strongly activating galaxies.
- :func:`plot_correlation_matrix` — correlation of the frequent features' activations.
- :func:`plot_equations` — each equation as intercept + sum of w_f x (top galaxy of feature f).
- :func:`plot_feature_maps` — the top-activating grid with the feature's spatial map overlaid.
- :func:`plot_activation_histograms` — A_f where each feature fires.
- :func:`explanation_figure` — one galaxy: contribution maps, waterfall, its active features.
- :func:`training_curves_figure` — train loss, validation RMSE and learning rate per epoch
  (the report embeds it).

``plot_feature``, ``plot_correlation_matrix`` and ``plot_equations``
save the Figure that the matching ``*_figure(...)`` returns (for notebooks, where a returned
Figure displays inline); the map, histogram and explanation figures are written directly.

Figures are built on :class:`matplotlib.figure.Figure` objects (no pyplot global state) and
written atomically. Every colour map has a labelled colour bar, every axis a label (with the
target's unit where it has one), text is at least :data:`SMALL` points, and text that comes
from data (objIDs, column names) goes through :func:`tex_safe`, so a ``$`` in a catalog never
reaches matplotlib's mathtext. Top-galaxy thumbnails carry their objID and A_f, and a red
frame with the reason when :func:`cutout_problems` finds the cutout broken.
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


#: Font sizes (points): readable at 100 % zoom in a browser.
SMALL, TEXT, TITLE = 8, 9, 11


def tex_safe(text: object) -> str:
    """``text`` drawn literally by matplotlib: every ``$`` escaped, so an objID or column name
    such as ``$\\undefinedmacro$`` is shown as typed instead of failing in mathtext."""
    return str(text).replace("$", r"\$")


def with_unit(text: str, unit: str | None) -> str:
    """``"validation RMSE [dex]"``; the bare text when there is no unit."""
    return f"{text} [{tex_safe(unit)}]" if unit else text


#: Thresholds of :func:`cutout_problems` (uint8 levels and pixel fractions).
EMPTY_FRACTION = 0.5
SATURATED_FRACTION = 0.05
STRIPE_STEP = 12.0


def cutout_problems(image: np.ndarray) -> list[str]:
    """Why a cutout looks broken (empty list when it looks fine).

    - ``"mostly empty"``: more than half the pixels are pure black or pure white (<= 2 or
      >= 253 in every band): outside the survey footprint, or a failed download;
    - ``"saturated"``: more than 5 % of the pixels at 255 in some band;
    - ``"stripes"``: a row or column whose mean brightness differs by more than 12 levels
      from the mean of its two neighbours (a readout or stitching artifact).

    Args:
        image: (3, H, W) uint8 cutout.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {img.shape}")
    problems = []
    flat = ((img <= 2).all(axis=0) | (img >= 253).all(axis=0)).mean()
    if flat > EMPTY_FRACTION:
        problems.append("mostly empty")
    if (img == 255).any(axis=0).mean() > SATURATED_FRACTION:
        problems.append("saturated")
    lum = img.astype(np.float64).mean(axis=0)
    for profile in (lum.mean(axis=1), lum.mean(axis=0)):
        if len(profile) >= 3:
            step = np.abs(profile[1:-1] - 0.5 * (profile[:-2] + profile[2:]))
            if step.max() > STRIPE_STEP:
                problems.append("stripes")
                break
    return problems


def _thumbnail(ax, image: np.ndarray, strength: float | None, objid: object = None) -> None:
    """A galaxy thumbnail: A_f in the corner, objID below, a red frame when it looks broken."""
    ax.imshow(to_rgb(image), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if strength is not None:
        ax.text(
            0.04, 0.96, f"A_f {strength:.2f}", transform=ax.transAxes, color="white",
            fontsize=SMALL, va="top", ha="left",
            bbox={"facecolor": "black", "alpha": 0.55, "pad": 1, "linewidth": 0},
        )  # fmt: skip
    if objid is not None:
        ax.set_xlabel(tex_safe(objid), fontsize=SMALL - 1, labelpad=1)
    problems = cutout_problems(image)
    if problems:
        for side in ax.spines.values():
            side.set_edgecolor("red")
            side.set_linewidth(2.5)
        ax.text(
            0.5, 0.04, "check: " + ", ".join(problems), transform=ax.transAxes, color="white",
            fontsize=SMALL - 1, va="bottom", ha="center",
            bbox={"facecolor": "red", "alpha": 0.8, "pad": 1, "linewidth": 0},
        )  # fmt: skip


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
    ax.legend(loc="lower left", fontsize=SMALL, frameon=False)
    if label:
        ax.set_title(tex_safe(label), fontsize=TITLE)
    return sc


def draw_grid(
    fig: Figure,
    spec,
    images: np.ndarray,
    strengths: np.ndarray,
    title: str = "",
    objids: Sequence | None = None,
) -> None:
    """3x3 galaxy thumbnails with their A_f (and objID when given) in a subplot spec (empty
    cells left blank; broken-looking cutouts framed in red, see :func:`cutout_problems`)."""
    sub = spec.subgridspec(3, 3, wspace=0.06, hspace=0.22 if objids is not None else 0.06)
    for i in range(9):
        ax = fig.add_subplot(sub[i // 3, i % 3])
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(images):
            _thumbnail(ax, images[i], float(strengths[i]), None if objids is None else objids[i])
        else:
            ax.set_facecolor("0.9")
        if i == 1 and title:
            ax.set_title(tex_safe(title), fontsize=TITLE)


def plot_feature(path: Path, *args, **kwargs) -> Path:
    """Write :func:`feature_figure` to ``path`` (.png or .pdf); the other arguments are its."""
    return save_figure(feature_figure(*args, **kwargs), path)


def feature_figure(
    label: str,
    images: np.ndarray,
    strengths: np.ndarray,
    bpt: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    f_activated: float | None = None,
    objids: Sequence | None = None,
) -> Figure:
    """One feature: optional BPT panel (x, y, A_f) and the 3x3 grid of its top galaxies.

    Args:
        label: feature label (SL17).
        images: (n <= 9, 3, H, W) uint8, strongest first.
        strengths: (n,) their A_f.
        bpt: (log [NII]/Ha (N,), log [OIII]/Hb (N,), A_f (N,)) of all galaxies, or None.
        f_activated: shown in the title when given.
        objids: (n,) objIDs of ``images``, written under each thumbnail.
    """
    title = label if f_activated is None else f"{label}  (f_activated = {f_activated:.1%})"
    if bpt is None:
        fig = Figure(figsize=(6.0, 6.4))
        gs = fig.add_gridspec(1, 1)
        draw_grid(fig, gs[0, 0], images, strengths, title, objids)
    else:
        fig = Figure(figsize=(12.5, 6.0))
        gs = fig.add_gridspec(1, 2, width_ratios=[1.15, 1.0], wspace=0.25)
        ax = fig.add_subplot(gs[0, 0])
        sc = draw_bpt(ax, *bpt, label=title)
        cb = fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02)
        cb.set_label(f"A_f of {tex_safe(label)} (activation / max)", fontsize=TEXT)
        draw_grid(fig, gs[0, 1], images, strengths, "top activations", objids)
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
    ax.set_xticks(range(m), [tex_safe(v) for v in labels], rotation=45, ha="right")
    ax.set_yticks(range(m), [tex_safe(v) for v in labels])
    if m <= 16:
        for i in range(m):
            for j in range(m):
                color = "white" if abs(corr[i, j]) > 0.6 else "black"
                ax.text(
                    j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=SMALL,
                    color=color,
                )  # fmt: skip
    fig.colorbar(im, ax=ax, label="Pearson r of activations", fraction=0.046, pad=0.04)
    ax.set_xlabel("feature")
    ax.set_ylabel("feature")
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
        fig.text(
            0.01, yc, f"{tex_safe(name)} = {intercept:.3f}", fontsize=11, va="center", ha="left"
        )
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
            ax.set_xlabel(f"A_f of {tex_safe(label)}", fontsize=SMALL, labelpad=1)
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
    objids: Sequence | None = None,
) -> Path:
    """Write :func:`feature_maps_figure` to ``path``; the other arguments are its."""
    return save_figure(
        feature_maps_figure(label, images, maps, strengths, resolution, objids), path
    )


def feature_maps_figure(
    label: str,
    images: np.ndarray,
    maps: np.ndarray,
    strengths: np.ndarray,
    resolution: str,
    objids: Sequence | None = None,
) -> Figure:
    """3x3 top-activating galaxies, each with the feature's spatial map overlaid, and a
    colour bar of the map (activation as a fraction of the largest value on these galaxies).

    Args:
        images: (n <= 9, 3, H, W) uint8, strongest first.
        maps: (n, H, W) the feature's maps upsampled to the cutout (activation units).
        strengths: (n,) A_f of each galaxy.
        resolution: the maps' native grid, e.g. ``'5x5 at 144 px'`` (shown on the figure).
        objids: (n,) objIDs, written under each thumbnail.
    """
    fig = Figure(figsize=(6.6, 6.8))
    gs = fig.add_gridspec(3, 4, width_ratios=[1, 1, 1, 0.07], wspace=0.06, hspace=0.22)
    vmax = float(np.max(maps)) if len(maps) else 1.0
    im = None
    for i in range(9):
        ax = fig.add_subplot(gs[i // 3, i % 3])
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(images):
            ax.set_facecolor("0.9")
            continue
        _thumbnail(ax, images[i], float(strengths[i]), None if objids is None else objids[i])
        im = overlay_map(ax, images[i], maps[i], vmax)
    if im is not None:
        cb = fig.colorbar(im, cax=fig.add_subplot(gs[:, 3]))
        cb.set_label(
            f"local activation of {tex_safe(label)} / max on these galaxies", fontsize=TEXT
        )
    fig.suptitle(f"{tex_safe(label)}: where it fires", fontsize=TITLE, y=0.98)
    fig.text(
        0.5, 0.06, f"map {resolution}; white contour: half the maximum; cell centres every "
        "32 px from the top-left pixel",
        ha="center", fontsize=SMALL, color="0.3",
    )  # fmt: skip
    return fig


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
    fig = Figure(figsize=(3.2 * cols, 2.7 * rows))
    bins = np.linspace(0, 1, 26)
    for i, (lab, a) in enumerate(strengths.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.hist(np.asarray(a, np.float64), bins=bins, color="#b0208c")
        ax.set_title(f"{tex_safe(lab)}  (fires on {frequency.get(lab, np.nan):.1%})", fontsize=TEXT)
        ax.set_xlabel("A_f (activation / max) where active", fontsize=SMALL)
        ax.set_ylabel("galaxies", fontsize=SMALL)
        ax.tick_params(labelsize=SMALL)
    fig.tight_layout()
    return save_figure(fig, path)


def draw_waterfall(
    ax,
    intercept: float,
    steps: Sequence[tuple[str, float]],
    measured: float | None,
    name: str,
    unit: str = "",
) -> None:
    """Horizontal waterfall: intercept, + each feature's contribution, = prediction (physical
    units, ``unit`` on the axis). The intercept is the prediction with no feature active."""
    level = float(intercept)
    labels = ["intercept (no feature active)"]
    ax.barh(0, level, color="0.75")
    for i, (lab, c) in enumerate(steps, start=1):
        ax.barh(i, c, left=level, color="#c0392b" if c >= 0 else "#2e6fb0")
        level += c
        labels.append(f"{tex_safe(lab)} ({c:+.3f})")
    ax.barh(len(steps) + 1, level, color="#5c0a5c")
    labels.append(f"prediction {level:.3f}")
    if measured is not None and np.isfinite(measured):
        ax.axvline(measured, color="k", ls="--", lw=1, label=f"measured {measured:.3f}")
        ax.legend(fontsize=SMALL, loc="lower right", frameon=False)
    ax.set_yticks(range(len(labels)), labels, fontsize=SMALL)
    ax.yaxis.tick_right()
    ax.invert_yaxis()
    lo = min(intercept, level, measured if measured is not None else level)
    hi = max(intercept, level, measured if measured is not None else level)
    span = max(hi - lo, 1e-3) + sum(abs(c) for _, c in steps)
    ax.set_xlim(lo - 0.6 * span, hi + 0.6 * span)
    ax.tick_params(axis="x", labelsize=SMALL)
    ax.set_xlabel(with_unit(f"predicted {tex_safe(name)}", unit), fontsize=SMALL)
    ax.set_title(tex_safe(name), fontsize=TEXT)


def _draw_feature_row(fig: Figure, gs, r: int, image: np.ndarray, row: tuple, vmax: float) -> None:
    """Row r of :func:`explanation_figure`: map on the galaxy, caption, 3 top galaxies."""
    lab, caption, heat, tops = row
    im = overlay_map(fig.add_subplot(gs[r, 0]), image, heat, vmax)
    fig.axes[-1].set_title(f"{tex_safe(lab)} on this galaxy", fontsize=SMALL)
    cb = fig.colorbar(im, ax=fig.axes[-1], fraction=0.046, pad=0.02)
    cb.set_label("activation / max", fontsize=SMALL)
    cb.ax.tick_params(labelsize=SMALL)
    cap = fig.add_subplot(gs[r, 1])
    cap.axis("off")
    cap.text(
        0.25, 0.5, tex_safe(caption), fontsize=SMALL, va="center", ha="left",
        transform=cap.transAxes, wrap=True,
    )  # fmt: skip
    for j in range(3):
        ax = fig.add_subplot(gs[r, 2 + j])
        ax.set_xticks([])
        ax.set_yticks([])
        if j < len(tops):
            _thumbnail(ax, tops[j], None)
            if j == 0:
                ax.set_title(f"top galaxies of {tex_safe(lab)}", fontsize=SMALL, loc="left")
        else:
            ax.set_facecolor("0.9")


def explanation_figure(
    title: str,
    image: np.ndarray,
    target_names: Sequence[str],
    contribution_maps: np.ndarray,
    waterfalls: Sequence[tuple[float, Sequence[tuple[str, float]], float | None]],
    features: Sequence[tuple[str, str, np.ndarray, np.ndarray]],
    resolution: str,
    units: dict[str, str] | None = None,
) -> Figure:
    """One galaxy explained: cutout, contribution maps, waterfalls, and each active feature.

    Args:
        image: (3, H, W) uint8 cutout.
        contribution_maps: (T, H, W) upsampled contribution maps (physical units).
        waterfalls: per target (intercept, [(feature label, contribution)], measured or None).
        features: per active feature (label, caption, (H, W) its upsampled map on this galaxy,
            (m <= 3, 3, H, W) top-activating galaxies of the run's analysis).
        resolution: native map grid, e.g. ``'5x5 at 144 px'``.
        units: target name -> unit (astropy syntax) for the axes and colour bars.
    """
    units = units or {}
    T = len(target_names)
    ncol = max(5, 4 + T)
    nrow = 1 + max(len(features), 1)
    fig = Figure(figsize=(2.6 * ncol, 2.6 * nrow))
    gs = fig.add_gridspec(nrow, ncol, wspace=0.25, hspace=0.45)
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(to_rgb(image), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("cutout", fontsize=TEXT)
    problems = cutout_problems(image)
    if problems:
        ax.set_xlabel("check: " + ", ".join(problems), color="red", fontsize=SMALL)
    lim = float(np.max(np.abs(contribution_maps))) if contribution_maps.size else 1.0
    for t, name in enumerate(target_names):
        ax = fig.add_subplot(gs[0, 1 + t])
        ax.imshow(to_rgb(image).mean(axis=2), cmap="gray", interpolation="nearest")
        im = ax.imshow(contribution_maps[t], cmap="RdBu_r", vmin=-lim, vmax=lim, alpha=0.6)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"contribution to {tex_safe(name)}", fontsize=SMALL)
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        cb.set_label(with_unit("contribution per map cell", units.get(name)), fontsize=SMALL)
        cb.ax.tick_params(labelsize=SMALL)
    wf = gs[0, 2 + T :].subgridspec(T, 1, hspace=0.9)
    for t, (icpt, steps, measured) in enumerate(waterfalls):
        name = target_names[t]
        draw_waterfall(fig.add_subplot(wf[t, 0]), icpt, steps, measured, name, units.get(name, ""))
    vmax = max((float(np.max(m)) for _, _, m, _ in features), default=1.0)
    for r, row in enumerate(features, start=1):
        _draw_feature_row(fig, gs, r, image, row, vmax)
    fig.suptitle(
        f"{tex_safe(title)}\nmaps {resolution} (cell centres every 32 px from the top-left)",
        fontsize=TEXT,
    )
    return fig


def training_curves_figure(metrics: Sequence[dict], units: dict[str, str] | None = None) -> Figure:
    """Training curves from ``metrics.jsonl`` records: train loss, validation RMSE, learning rate.

    Loss and RMSE are drawn on a logarithmic axis when they span more than a decade, so one
    diverging epoch (an RMSE of 1e3 dex early in training) does not flatten the rest of the
    curve into a line; the worst epoch is marked when it is more than 10x the final value.

    Args:
        metrics: one dict per epoch with ``epoch``, ``train_loss`` (RMSE of standardized
            targets), ``val_rmse`` (target name -> RMSE in physical units) and ``lr``,
            as :func:`sfnet.runs.read_metrics` returns them.
        units: target name -> unit (astropy syntax) for the RMSE axis; a shared unit goes on
            the axis, different units into the legend.

    Returns:
        A Figure with three panels sharing the epoch axis (empty panels when no records).

    Example:
        >>> fig = training_curves_figure(read_metrics("runs/demo/metrics.jsonl"))
    """
    units = units or {}
    epochs = [int(r["epoch"]) for r in metrics]
    fig = Figure(figsize=(12.0, 3.6))
    axes = fig.subplots(1, 3)
    loss = np.array([r["train_loss"] for r in metrics], dtype=np.float64)
    axes[0].plot(epochs, loss, "o-", ms=3, color="#5c0a5c")
    axes[0].set_ylabel("train loss (standardized RMSE)")
    names = list(metrics[0]["val_rmse"]) if metrics else []
    shared = {units.get(n, "") for n in names}
    one_unit = shared.pop() if len(shared) == 1 else None
    for name in names:
        v = np.array([r["val_rmse"][name] for r in metrics], dtype=np.float64)
        lab = tex_safe(name) if one_unit is not None else with_unit(tex_safe(name), units.get(name))
        (line,) = axes[1].plot(epochs, v, "o-", ms=3, label=lab)
        ok = np.isfinite(v)
        if ok.sum() >= 2 and v[ok].max() > 10 * v[ok][-1]:
            i = int(np.nanargmax(v))
            axes[1].annotate(
                f"spike {v[i]:.3g}", (epochs[i], v[i]), xytext=(8, -4),
                textcoords="offset points", fontsize=SMALL, color=line.get_color(),
            )  # fmt: skip
    axes[1].set_ylabel(with_unit("validation RMSE", one_unit))
    if names:
        axes[1].legend(fontsize=SMALL, frameon=False)
    axes[2].plot(epochs, [r.get("lr", np.nan) for r in metrics], "o-", ms=3, color="#f0603c")
    axes[2].set_ylabel("learning rate (end of epoch)")
    for ax in axes[:2]:  # log scale where the values span more than a decade (a spike)
        ys = np.concatenate([np.asarray(line.get_ydata(), np.float64) for line in ax.lines] or [[]])
        ys = ys[np.isfinite(ys)]
        if len(ys) and ys.min() > 0 and ys.max() > 10 * ys.min():
            ax.set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
