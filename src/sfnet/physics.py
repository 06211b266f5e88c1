"""Emission-line diagnostics shared by the synthetic survey, the plots and the AGN classifier.

Line fluxes are in 1e-17 erg/s/cm^2 (MPA-JHU units); ratios are base-10 logarithms.
"""

from __future__ import annotations

import numpy as np

#: The four BPT lines in the order sfnet uses for the ``bpt_lines`` target.
BPT_LINES = ("nii_6584_flux", "h_alpha_flux", "oiii_5007_flux", "h_beta_flux")


def bpt_ratios(log_fluxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BPT coordinates from log10 line fluxes.

    Args:
        log_fluxes: (N, 4) log10 fluxes in the order of :data:`BPT_LINES`
            ([NII] 6584, H-alpha, [OIII] 5007, H-beta).

    Returns:
        (log [NII]/Halpha, log [OIII]/Hbeta), each (N,).
    """
    f = np.asarray(log_fluxes, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != 4:
        raise ValueError(f"expected (N, 4) log fluxes in order {BPT_LINES}, got shape {f.shape}")
    return f[:, 0] - f[:, 1], f[:, 2] - f[:, 3]


def kauffmann_curve(log_n2ha: np.ndarray) -> np.ndarray:
    """Kauffmann et al. (2003) demarcation: log [OIII]/Hb = 0.61 / (log [NII]/Ha - 0.05) + 1.3.

    Only meaningful left of the asymptote at log [NII]/Ha = 0.05.
    """
    x = np.asarray(log_n2ha, dtype=np.float64)
    return 0.61 / (x - 0.05) + 1.3


def kewley_curve(log_n2ha: np.ndarray) -> np.ndarray:
    """Kewley et al. (2001) maximum-starburst line: log [OIII]/Hb = 0.61 / (x - 0.47) + 1.19.

    Only meaningful left of the asymptote at log [NII]/Ha = 0.47.
    """
    x = np.asarray(log_n2ha, dtype=np.float64)
    return 0.61 / (x - 0.47) + 1.19


def kauffmann_agn(log_n2ha: np.ndarray, log_o3hb: np.ndarray) -> np.ndarray:
    """AGN flag after Kauffmann et al. (2003): above the demarcation or right of its asymptote.

    Args:
        log_n2ha: (N,) log10 [NII]6584 / H-alpha.
        log_o3hb: (N,) log10 [OIII]5007 / H-beta.

    Returns:
        (N,) bool, True for AGN (composites included; the paper's own labels come from
        ``bptclass`` and exclude composites, see :func:`bpt_class` and
        :mod:`sfnet.analysis.paper`).
    """
    x = np.asarray(log_n2ha, dtype=np.float64)
    y = np.asarray(log_o3hb, dtype=np.float64)
    right = x >= 0.05
    with np.errstate(divide="ignore", invalid="ignore"):
        above = y > kauffmann_curve(np.where(right, 0.0, x))
    return right | above


#: MPA-JHU ``bptclass`` codes (Brinchmann et al. 2004): star-forming, low-S/N star-forming,
#: composite, AGN, low-S/N LINER; -1 = unclassifiable.
BPT_SF, BPT_LOW_SN_SF, BPT_COMPOSITE, BPT_AGN, BPT_LOW_SN_LINER, BPT_UNCLASSIFIABLE = (
    1,
    2,
    3,
    4,
    5,
    -1,
)


def bpt_class(fluxes: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """MPA-JHU-style ``bptclass`` from the four line fluxes and their errors.

    With S/N > 3 in all four lines: 1 (star-forming) below the Kauffmann et al. (2003) line,
    4 (AGN) above the Kewley et al. (2001) line or right of its asymptote, 3 (composite)
    in between. Otherwise, with S/N > 2 in [NII] and H-alpha: 2 (low-S/N star-forming) for
    log [NII]/Ha < -0.4, else 5 (low-S/N LINER). Everything else: -1 (unclassifiable).

    Args:
        fluxes: (N, 4) line fluxes (1e-17 erg/s/cm^2) in the order of :data:`BPT_LINES`.
        errors: (N, 4) their 1-sigma errors, same order.

    Returns:
        (N,) int64 class codes.
    """
    f = np.asarray(fluxes, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    if f.shape != e.shape or f.ndim != 2 or f.shape[1] != 4:
        raise ValueError(f"expected (N, 4) fluxes and errors, got {f.shape} and {e.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(e > 0, f / e, 0.0)
        logf = np.log10(np.where(f > 0, f, np.nan))
    x, y = logf[:, 0] - logf[:, 1], logf[:, 2] - logf[:, 3]
    strong = np.all(snr > 3, axis=1) & np.isfinite(x) & np.isfinite(y)
    weak = ~strong & (snr[:, 0] > 2) & (snr[:, 1] > 2) & np.isfinite(x)
    above_kauffmann = kauffmann_agn(np.where(strong, x, 0.0), np.where(strong, y, 0.0))
    right = np.where(strong, x, 0.0) >= 0.47
    with np.errstate(divide="ignore", invalid="ignore"):
        above_kewley = right | (y > kewley_curve(np.where(right, 0.0, x)))
    out = np.full(len(f), BPT_UNCLASSIFIABLE, dtype=np.int64)
    out[strong] = np.where(
        above_kewley[strong], BPT_AGN, np.where(above_kauffmann[strong], BPT_COMPOSITE, BPT_SF)
    )
    out[weak] = np.where(x[weak] < -0.4, BPT_LOW_SN_SF, BPT_LOW_SN_LINER)
    return out
