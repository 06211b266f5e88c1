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
        (N,) bool, True for AGN (composites included, as in the paper).
    """
    x = np.asarray(log_n2ha, dtype=np.float64)
    y = np.asarray(log_o3hb, dtype=np.float64)
    right = x >= 0.05
    with np.errstate(divide="ignore", invalid="ignore"):
        above = y > kauffmann_curve(np.where(right, 0.0, x))
    return right | above
