"""Quantities measured on the cutouts themselves: stand-in factors for real data.

A real catalog may carry no mass, SFR, colour, size or inclination to score a feature's
interpretability against (``examples/sdss-metallicity-400`` has only objID and the target).
:func:`image_measurements` measures three such quantities on each gri cutout, so that every
method's units can still be scored against something physical. They are measured from the
images, not from a catalog, and named ``img_*`` to say so:

``img_gr_colour``
    -2.5 log10(F_g / F_r), F the background-subtracted sum of the blue (g) and green (r)
    channels in a central circular aperture (radius = 1/8 of the cutout side, at least 2 px).
    The cutouts are asinh-stretched JPEGs, so this is a *display* colour: monotonic with g-r,
    not a calibrated magnitude difference.
``img_r50_px``
    Gaussian-equivalent half-light radius sqrt(2 ln 2) * sigma in pixels of the analysed cutout,
    sigma = det(M)^(1/4) of the adaptive second moments M (GalSim HSM) of the summed channels.
    Exact for a Gaussian profile; for an exponential disk it is ~0.84 of the true value. A size
    ranking, not a physical size (multiply by the cutout's pixel scale for arcsec).
``img_axis_ratio``
    b/a = (1 - |g|) / (1 + |g|) from the same moments' shape (|g| the reduced-shear
    ellipticity): 1 for a round or face-on galaxy, small for an edge-on disk.

A cutout where the moments do not converge (blank, or no central source) gets NaN in all three
and is counted in the log; nothing is skipped silently.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: The stand-in factor columns :func:`image_measurements` returns, in order.
IMAGE_FACTORS = ("img_gr_colour", "img_r50_px", "img_axis_ratio")
_BORDER = 2  # px of the cutout edge the background is estimated from


def _background(img: np.ndarray) -> np.ndarray:
    """(C,) median of each channel over the outer ``_BORDER`` pixels of (C, H, W)."""
    b = _BORDER
    edge = np.concatenate(
        [img[:, :b].reshape(len(img), -1), img[:, -b:].reshape(len(img), -1)]
        + [img[:, b:-b, :b].reshape(len(img), -1), img[:, b:-b, -b:].reshape(len(img), -1)],
        axis=1,
    )
    return np.median(edge, axis=1)


def measure_galaxy(image: np.ndarray) -> tuple[float, float, float]:
    """(g-r display colour [mag], Gaussian-equivalent half-light radius [px], axis ratio b/a)
    of one (3, H, W) gri cutout (channels R=i, G=r, B=g; any dtype); NaN where undefined."""
    import galsim

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[0] != 3 or min(img.shape[1:]) <= 2 * _BORDER + 2:
        raise ValueError(
            f"measure_galaxy: need a (3, H, W) cutout larger than 6 px, got {img.shape}"
        )
    img = img - _background(img)[:, None, None]
    h, w = img.shape[1:]
    yy, xx = np.mgrid[:h, :w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    aperture = (yy - cy) ** 2 + (xx - cx) ** 2 <= max(2.0, min(h, w) / 8) ** 2
    f_r, f_g = img[1][aperture].sum(), img[2][aperture].sum()
    colour = float(-2.5 * np.log10(f_g / f_r)) if f_g > 0 and f_r > 0 else float("nan")
    white = galsim.ImageD(np.ascontiguousarray(img.sum(axis=0)))
    res = galsim.hsm.FindAdaptiveMom(
        white,
        strict=False,
        guess_sig=max(1.0, min(h, w) / 8),
        guess_centroid=galsim.PositionD(cx + 1, cy + 1),  # GalSim images start at pixel 1
    )
    if res.moments_status != 0 or not np.isfinite(res.moments_sigma) or res.moments_sigma <= 0:
        return float("nan"), float("nan"), float("nan")
    r50 = float(np.sqrt(2 * np.log(2)) * res.moments_sigma)
    g = float(res.observed_shape.g)
    return colour, r50, float((1 - g) / (1 + g))


def image_measurements(images: Any) -> pd.DataFrame:
    """The ``img_*`` stand-in factors (:data:`IMAGE_FACTORS`) of (N, 3, H, W) gri cutouts
    (an array or an :class:`~sfnet.data.dataset.ImageArray`, read in batches).

    Returns:
        N rows, one column per factor (see the module docstring for units); NaN where a
        cutout could not be measured (counted in the log).
    """
    rows = []
    for start in range(0, len(images), 256):  # batches: memory-mapped or decoded stores
        chunk = np.asarray(images[np.arange(start, min(start + 256, len(images)))])
        rows += [measure_galaxy(img) for img in chunk]
    out = pd.DataFrame(rows, columns=list(IMAGE_FACTORS), dtype=np.float64)
    if len(out) == 0:
        return out
    failed = int(out.isna().any(axis=1).sum())
    if failed:
        log.info("image measurements: %d of %d cutouts not measurable (NaN)", failed, len(out))
    return out
