"""The built-in synthetic galaxy survey: GalSim images with known physics (ground truth).

Each galaxy is drawn from published scaling relations, then rendered as a gri image and
written in the real dataset format (``galaxies.csv`` with the MPA-JHU column names + one
``images/{objID}.png`` per galaxy), so everything downstream runs unchanged. Every latent
factor is kept as a ``true_*`` column. The image carries part, not all, of the information
about each target: intrinsic metallicity scatter, line-ratio scatter, AGN line ratios and
measurement noise are invisible to any image.

Relations (all vectorised in :func:`draw_catalog`; sources in brackets)
------------------------------------------------------------------------
Population
    * log M* ~ N(9.8, 0.8) truncated to [8.0, 11.5] (DESIGN.md suggests N(10.2, 0.55); widened
      so that the S/N-selected star-forming sample spans the MZR as in SDSS).
    * Quenched fraction 0.75 / (1 + exp(-(log M* - 10.5) / 0.3)) [Peng et al. 2010, shape].
    * Star-forming main sequence log SFR = 0.76 (log M* - 10) - 0.1, scatter 0.3 dex; quenched
      galaxies sit 1.2 +- 0.4 dex below  [Renzini & Peng 2015].
    * 4 % of star-forming galaxies are starbursts (+0.5..1.0 dex above the MS, with a compact
      very blue nuclear component); 5 % of all galaxies have a close companion (merger, +0.2 dex
      SFR when star-forming)  [stand-in for SDSS close pairs, Ellison et al. 2008].
    * Redshift uniform in volume between 0.02 and z_lim, where the galaxy reaches r = 17.77 (the
      SDSS Main Galaxy Sample limit [Strauss et al. 2002]), z_lim clipped to [0.03, 0.15];
      distances from astropy's Planck18 cosmology.

Morphology (image)
    * r-band bulge-to-total 0.05 + 0.4 sigmoid((log M* - 10.6)/0.3) + 0.35 [quenched] +- 0.08,
      in [0, 0.95]: bulges grow with mass and quenching [Bluck et al. 2014, trend].
    * Bulge: Sersic n = 2.5 + 2 B/T +- 0.4 in [2.5, 4.5] (steps of 0.5), axis ratio U(0.6, 1);
      disk: inclined exponential (scale height 0.1 scale length), cos i ~ U(0, 1) (random
      orientation), random position angle.
    * Disk half-light radius: late-type size-mass relation R50 = 0.1 kpc M^0.14 (1 + M / 3.98e10
      Msun)^0.25, 0.15 dex scatter; bulge-dominated galaxies follow the early-type relation
      R50 = 2.88e-6 kpc M^0.56  [Shen et al. 2003].
    * Colours: bulge g-r = 0.76 +- 0.03 (red); disk g-r = 0.45 - 0.3 (log sSFR + 10) +- 0.04 in
      [0.15, 0.8] (bluer at higher sSFR) [Bell et al. 2003 colour-sSFR trend]; r-i = 0.12 + 0.35
      (g-r). Stellar mass-to-light log(M/L_r) = -0.306 + 1.097 (g-r) - 0.093 (Chabrier IMF)
      [Bell et al. 2003]; disk dust dims the r light.
    * Dust: Halpha attenuation A_Ha = 0.91 + 0.77 X + 0.11 X^2 - 0.09 X^3, X = log(M*/1e10)
      [Garn & Best 2010], times (1 + 0.6 (1 - cos i)(1 - B/T)) for inclined disks [Driver et al.
      2007, trend], times 0.4 when quenched, 0.12 dex scatter. ``true_dust_av`` = A_V(gas) =
      A_Ha / 0.82; starlight sees E(B-V)_star = 0.44 E(B-V)_gas [Calzetti et al. 2000], which
      reddens and dims the disk (k_g, k_r, k_i = 4.69, 3.55, 2.74).
    * Star-forming clumps: clumpiness = sigmoid((log Sigma_SFR + 1.5) / 0.3) with Sigma_SFR =
      SFR / (2 pi R50^2) [Msun/yr/kpc^2]; 3 + 8 c blue (g-r = 0.1) knots along the disk carry 30 c
      % of its g light [high Sigma_SFR disks are clumpy, e.g. Wuyts et al. 2012].
    * AGN: a nuclear point source (g-r = 0.2) with r flux 0.03 nanomaggies per 1e-17 erg/s/cm^2 of
      AGN Halpha, at most half the galaxy light.
    * Images: gri, 0.262"/px (Legacy Survey), Moffat PSF (beta 3.5) with FWHM ~ U(1.1", 1.5"),
      Gaussian sky noise (0.015, 0.02, 0.03 nanomaggies/px in g, r, i), Lupton et al. (2004)
      asinh RGB (astropy; stretch 0.4, Q 6) to uint8 with 0.75 i, r, 1.6 g as red, green, blue
      (close to the Legacy Survey JPEG colour balance: blue disks, yellow bulges).

Spectroscopy (catalog)
    * Metallicity 12+log(O/H) (Tremonti et al. 2004 scale): MZR -1.492 + 1.847 x - 0.08026 x^2,
      x = log M* [Tremonti et al. 2004], minus 0.2 (SFR offset from the MS) [Mannucci et al. 2010,
      fundamental metallicity relation], plus intrinsic scatter no image shows, 0.07 dex rising
      to 0.115 dex at log M* = 8.5 (the MZR scatter grows at low mass [T04]): this is
      ``true_oh``. Fibre bias ``true_fibre_bias`` = -0.1 sin(i) (1 - B/T) dex: the 3" fibre of an
      edge-on disk sees its metal-poor outskirts [Tremonti et al. 2004, Sect. 6]. The fibre
      metallicity ``true_oh + true_fibre_bias`` sets the lines; ``oh_p50`` adds 0.03 dex noise and
      exists (else -99.9, as in MPA-JHU) only for S/N > 3 star-forming galaxies (below Kauffmann).
    * Halpha luminosity from SFR: L = SFR / 7.9e-42 erg/s [Kennicutt 1998], at the luminosity
      distance, times the 3"-fibre aperture fraction of the PSF-smeared inclined disk (``true_
      fibre_frac``, exponential-profile approximation) and 10^(-0.4 A_Ha).
    * Hbeta: intrinsic Balmer decrement 2.86 (Case B), A_Hb = A_Ha 4.60 / 3.33 [Calzetti 2000].
    * [NII]/Halpha from the fibre metallicity through the Pettini & Pagel (2004) N2 calibration
      12+log(O/H)_PP04 = 8.90 + 0.57 N2, after converting the T04 scale to PP04 with
      8.73 + 0.65 (OH_T04 - 9.0) [approximates Kewley & Ellison 2008], 0.04 dex scatter.
    * [OIII]/Hbeta: 0.25 dex below the Kauffmann et al. (2003) demarcation (the SF sequence),
      0.08 dex scatter, kept at least 0.05 dex below it.
    * AGN: probability 0.8 sigmoid((log M* - 10) / 0.35) (x 0.8 if quenched), AGN Halpha
      luminosity log L = 39.8 + 0.8 (log M* - 10.5) +- 0.45 (+0.5 for Seyferts); 35 % Seyferts
      (log N2 ~ 0.05, log O3/Hb ~ 0.7) and 65 % LINERs (0.15, 0.0) [Kewley et al. 2006 branches].
      The AGN's lines add to the star-forming ones, so composites arise naturally.
      ``true_agn_frac`` is the AGN share of the fibre Halpha; ``true_agn_point_r`` the r flux of
      the nuclear point source in the image.
    * Line errors: sqrt(e0^2 + (0.03 F)^2) with e0 = 5, 6, 4.5, 4 (x 10^(0.1 N(0,1))) for
      [NII], Halpha, [OIII], Hbeta in 1e-17 erg/s/cm^2 (MPA-JHU-like errors); measured flux =
      true flux + error x N(0, 1). Weak-line (quenched, distant, dusty) galaxies fail S/N > 3.
    * ``lgm_tot_p50`` = log M* +- 0.08; ``sfr_tot_p50`` = log SFR +- 0.15 (0.35 when quenched).

Resulting survey (seed 0, 12000 galaxies): 63 % pass the bpt_lines cuts (quenched 26 %,
star-forming 70 %), 47 % have a metallicity (oh_p50 std 0.18 dex, 7.9-9.1); 25 % of the
line-selected galaxies lie above the Kauffmann line; median z 0.042, median disk half-light
radius 10 px.

Determinism: galaxy ``i`` draws its latent factors from ``SeedSequence([seed, i, 0])`` and its
image noise/clump positions from ``SeedSequence([seed, i, 1])``, so the output does not depend
on the number of worker processes (nor on ``n``: galaxy ``i`` is the same in any survey size).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sfnet.config import MAX_SEED, MIN_CROP, check_fields, setting
from sfnet.errors import DataError, UserError
from sfnet.io import atomic_write, atomic_write_json, foreign_entries
from sfnet.physics import BPT_LINES, bpt_class, kauffmann_agn, kauffmann_curve
from sfnet.progress import progress_bar

#: Arcseconds per pixel (DESI Legacy Survey cutouts).
PIXEL_SCALE = 0.262
#: SDSS spectroscopic fibre radius (arcsec).
FIBRE_RADIUS = 1.5
#: SDSS Main Galaxy Sample Petrosian r limit (mag).
R_LIMIT = 17.77
#: First objID; galaxy i gets OBJID_BASE + i (19-digit, like SDSS DR7 objIDs).
OBJID_BASE = 1237600000000000000
#: MPA-JHU "no measurement" value.
MISSING = -99.9
#: Schema version written to synth.json (bump when the relations change).
SYNTH_VERSION = 2

#: The real data contract's catalog columns (MPA-JHU / SDSS names), in order.
CONTRACT_COLUMNS = (
    "objID",
    "ra",
    "dec",
    "z",
    "oh_p50",
    "lgm_tot_p50",
    "sfr_tot_p50",
    "nii_6584_flux",
    "nii_6584_flux_err",
    "h_alpha_flux",
    "h_alpha_flux_err",
    "oiii_5007_flux",
    "oiii_5007_flux_err",
    "h_beta_flux",
    "h_beta_flux_err",
    "bptclass",
)

#: Ground-truth latent factors, in order (units in the docstring of :func:`draw_catalog`).
TRUE_COLUMNS = (
    "true_z",
    "true_logmass",
    "true_logsfr",
    "true_delta_ms",
    "true_log_ssfr",
    "true_quenched",
    "true_bulge_frac",
    "true_bulge_n",
    "true_bulge_r50_kpc",
    "true_disk_r50_kpc",
    "true_r50_arcsec",
    "true_cos_inc",
    "true_pa_deg",
    "true_disk_gr",
    "true_dust_av",
    "true_clumpiness",
    "true_starburst",
    "true_merger",
    "true_agn",
    "true_agn_frac",
    "true_agn_point_r",
    "true_oh",
    "true_fibre_bias",
    "true_fibre_frac",
    "true_mag_r",
    "true_psf_fwhm",
)

#: ``true_*`` columns that hold information no image can show (the oracle leaves them out).
HIDDEN_TRUE_COLUMNS = ("true_oh",)

_UNIFORMS = (
    "mass",
    "quench",
    "starburst",
    "sb_boost",
    "merger",
    "agn",
    "agn_type",
    "cos_i",
    "pa",
    "z",
    "ra",
    "dec",
    "bulge_q",
    "psf",
)
_NORMALS = (
    "dms",
    "oh",
    "bt",
    "sersic",
    "size",
    "dust",
    "disk_col",
    "bulge_col",
    "agn_lum",
    "agn_x",
    "agn_y",
    "sf_o3",
    "sf_n2",
    "err",
    "f_nii",
    "f_ha",
    "f_oiii",
    "f_hb",
    "oh_meas",
    "mass_meas",
    "sfr_meas",
)

# Calzetti et al. (2000) k(lambda) at g, r, i, H-beta, H-alpha.
_K_G, _K_R, _K_I, _K_HB, _K_HA = 4.69, 3.55, 2.74, 4.60, 3.33
_R_V = 4.05
_SKY_SIGMA = (0.015, 0.02, 0.03)  # nanomaggies / pixel in g, r, i


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _latent_draws(n: int, seed: int, start: int = 0) -> tuple[dict, dict]:
    """Per-galaxy uniforms and standard normals, each (n,), seeded by (seed, index, 0)."""
    u = np.empty((n, len(_UNIFORMS)))
    g = np.empty((n, len(_NORMALS)))
    for j in range(n):
        rng = np.random.default_rng([seed, start + j, 0])
        u[j] = rng.random(len(_UNIFORMS))
        g[j] = rng.standard_normal(len(_NORMALS))
    return dict(zip(_UNIFORMS, u.T, strict=True)), dict(zip(_NORMALS, g.T, strict=True))


class _Cosmo:
    """Planck18 distances tabulated on a redshift grid (fast interpolation)."""

    def __init__(self) -> None:
        from astropy.cosmology import Planck18

        self.zgrid = np.linspace(0.005, 0.3, 600)
        self.dl_cm = Planck18.luminosity_distance(self.zgrid).to("cm").value
        self.dm = Planck18.distmod(self.zgrid).value
        self.kpc_per_arcsec = 1.0 / Planck18.arcsec_per_kpc_proper(self.zgrid).value

    def z_at_distmod(self, dm: np.ndarray) -> np.ndarray:
        return np.interp(dm, self.dm, self.zgrid)

    def at(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.interp(z, self.zgrid, self.dl_cm),
            np.interp(z, self.zgrid, self.dm),
            np.interp(z, self.zgrid, self.kpc_per_arcsec),
        )


def _fibre_fraction(r50_arcsec: np.ndarray, cos_i: np.ndarray, psf_fwhm: np.ndarray) -> np.ndarray:
    """Share of an inclined exponential disk's light inside the 3" fibre (approximation).

    The projected disk is replaced by a circular exponential of scale h sqrt(q) (q the projected
    axis ratio), broadened in quadrature by the PSF; f(<R) = 1 - (1 + R/h) exp(-R/h).
    """
    h = r50_arcsec / 1.678
    q = np.sqrt(cos_i**2 + 0.1**2 * (1 - cos_i**2))
    sigma_psf = psf_fwhm / 2.355
    h_eff = np.sqrt(h**2 * q + (sigma_psf / 1.5) ** 2)
    x = FIBRE_RADIUS / h_eff
    return 1.0 - (1.0 + x) * np.exp(-x)


def _population(U: dict, N: dict) -> dict:
    """Mass, quenching, starbursts, mergers and star formation (log Msun, log Msun/yr)."""
    from scipy.stats import truncnorm

    logm = truncnorm.ppf(U["mass"], (8.0 - 9.8) / 0.8, (11.5 - 9.8) / 0.8, 9.8, 0.8)
    quenched = U["quench"] < 0.75 * _sigmoid((logm - 10.5) / 0.3)
    starburst = ~quenched & (U["starburst"] < 0.04)
    merger = U["merger"] < 0.05
    ms = 0.76 * (logm - 10.0) - 0.1
    dms = np.where(quenched, -1.2 + 0.4 * N["dms"], 0.3 * N["dms"])
    dms = dms + starburst * (0.5 + 0.5 * U["sb_boost"]) + (merger & ~quenched) * 0.2
    logsfr = ms + dms
    lssfr = logsfr - logm
    return dict(
        logm=logm,
        quenched=quenched,
        starburst=starburst,
        merger=merger,
        dms=dms,
        logsfr=logsfr,
        lssfr=lssfr,
    )


def _morphology(U: dict, N: dict, g: dict) -> dict:
    """Bulge fraction and Sersic index, sizes [kpc], orientation, PSF [arcsec]."""
    logm, quenched = g["logm"], g["quenched"]
    bt = np.clip(
        0.05 + 0.4 * _sigmoid((logm - 10.6) / 0.3) + 0.35 * quenched + 0.08 * N["bt"], 0.0, 0.95
    )
    sersic_n = np.clip(np.round((2.5 + 2.0 * bt + 0.4 * N["sersic"]) * 2) / 2, 2.5, 4.5)
    mass = 10.0**logm
    r50_disk = 0.1 * mass**0.14 * (1 + mass / 3.98e10) ** 0.25 * 10 ** (0.15 * N["size"])
    r50_early = 2.88e-6 * mass**0.56 * 10 ** (0.15 * N["size"])
    w = np.clip((bt - 0.4) / 0.4, 0.0, 1.0)
    r50_bulge = (1 - w) * 0.3 * r50_disk + w * r50_early
    cos_i = U["cos_i"]
    sin_i = np.sqrt(1.0 - cos_i**2)
    pa = 180.0 * U["pa"]
    psf_fwhm = 1.1 + 0.4 * U["psf"]
    return dict(
        bt=bt,
        sersic_n=sersic_n,
        r50_disk=r50_disk,
        r50_bulge=r50_bulge,
        cos_i=cos_i,
        sin_i=sin_i,
        pa=pa,
        psf_fwhm=psf_fwhm,
    )


def _colours_dust(N: dict, g: dict) -> dict:
    """Disk colour, gas attenuation [mag], absolute r magnitude and clumpiness."""
    logm, bt, cos_i, quenched = g["logm"], g["bt"], g["cos_i"], g["quenched"]
    disk_gr = np.clip(0.45 - 0.3 * (g["lssfr"] + 10.0) + 0.04 * N["disk_col"], 0.15, 0.8)
    bulge_gr = 0.76 + 0.03 * N["bulge_col"]
    x = logm - 10.0
    a_ha = np.clip(0.91 + 0.77 * x + 0.11 * x**2 - 0.09 * x**3, 0.05, None)
    a_ha = a_ha * (1 + 0.6 * (1 - cos_i) * (1 - bt)) * np.where(quenched, 0.4, 1.0)
    a_ha = a_ha * 10 ** (0.12 * N["dust"])
    a_v = a_ha / (_K_HA / _R_V)
    ebv_star = 0.44 * a_v / _R_V
    gr_tot = bt * bulge_gr + (1 - bt) * disk_gr
    log_ml = -0.306 + 1.097 * gr_tot - 0.093  # Chabrier IMF (Bell et al. 2003 Sect. 6)
    abs_r = 4.65 - 2.5 * (logm - log_ml) + (1 - bt) * _K_R * ebv_star
    sigma_sfr = 10 ** g["logsfr"] / (2 * np.pi * g["r50_disk"] ** 2)
    clump = np.where(quenched, 0.0, _sigmoid((np.log10(sigma_sfr) + 1.5) / 0.3))
    return dict(disk_gr=disk_gr, a_ha=a_ha, a_v=a_v, abs_r=abs_r, clump=clump)


def _redshift(U: dict, g: dict, cosmo: _Cosmo) -> dict:
    """Redshift from the r < 17.77 flux limit; luminosity distance [cm], r mag, size [arcsec]."""
    z_lim = np.clip(cosmo.z_at_distmod(R_LIMIT - g["abs_r"]), 0.03, 0.15)
    z = 0.02 + (z_lim - 0.02) * U["z"] ** (1 / 3)  # uniform in volume
    dl_cm, distmod, kpc_per_arcsec = cosmo.at(z)
    mag_r = g["abs_r"] + distmod
    r50_arcsec = g["r50_disk"] / kpc_per_arcsec
    return dict(z=z, dl_cm=dl_cm, mag_r=mag_r, r50_arcsec=r50_arcsec)


def _metallicity(N: dict, g: dict) -> dict:
    """Intrinsic and fibre 12+log(O/H) [dex], fibre bias [dex] and fibre aperture fraction."""
    logm = g["logm"]
    oh_scatter = 0.07 + 0.03 * np.clip(10.0 - logm, 0.0, 1.5)
    oh = -1.492 + 1.847 * logm - 0.08026 * logm**2 - 0.2 * g["dms"] + oh_scatter * N["oh"]
    fibre_bias = -0.1 * g["sin_i"] * (1 - g["bt"])
    oh_fibre = oh + fibre_bias
    fibre_frac = _fibre_fraction(g["r50_arcsec"], g["cos_i"], g["psf_fwhm"])
    return dict(oh=oh, fibre_bias=fibre_bias, oh_fibre=oh_fibre, fibre_frac=fibre_frac)


def _sf_lines(N: dict, g: dict) -> dict:
    """Star-forming line fluxes inside the fibre (1e-17 erg/s/cm^2) and the attenuations."""
    flux_unit = 1e17 / (4 * np.pi * g["dl_cm"] ** 2)
    att_ha = 10 ** (-0.4 * g["a_ha"])
    att_hb = 10 ** (-0.4 * g["a_ha"] * _K_HB / _K_HA)
    ha_int = 10 ** g["logsfr"] / 7.9e-42 * flux_unit * g["fibre_frac"]
    ha_sf = ha_int * att_ha
    hb_sf = ha_int / 2.86 * att_hb
    oh_pp04 = 8.73 + 0.65 * (g["oh_fibre"] - 9.0)
    n2_sf = np.minimum((oh_pp04 - 8.90) / 0.57 + 0.04 * N["sf_n2"], -0.2)
    kc = kauffmann_curve(n2_sf)
    o3_sf = np.clip(kc - 0.25 + 0.08 * N["sf_o3"], -1.2, kc - 0.05)
    nii_sf = ha_sf * 10**n2_sf
    oiii_sf = hb_sf * 10**o3_sf
    return dict(
        flux_unit=flux_unit,
        att_ha=att_ha,
        att_hb=att_hb,
        ha_sf=ha_sf,
        hb_sf=hb_sf,
        nii_sf=nii_sf,
        oiii_sf=oiii_sf,
    )


def _agn_lines(U: dict, N: dict, g: dict) -> dict:
    """AGN flags and AGN line fluxes (all inside the fibre; 1e-17 erg/s/cm^2)."""
    logm = g["logm"]
    agn = U["agn"] < 0.8 * _sigmoid((logm - 10.0) / 0.35) * np.where(g["quenched"], 0.8, 1.0)
    seyfert = agn & (U["agn_type"] < 0.35)
    log_l_agn = 39.8 + 0.8 * (logm - 10.5) + 0.45 * N["agn_lum"] + 0.5 * seyfert
    ha_agn_int = np.where(agn, 10**log_l_agn * g["flux_unit"], 0.0)
    ha_agn = ha_agn_int * g["att_ha"]
    hb_agn = ha_agn_int / 3.1 * g["att_hb"]
    agn_x = np.where(seyfert, 0.05 + 0.12 * N["agn_x"], 0.15 + 0.12 * N["agn_x"])
    agn_y = np.where(seyfert, 0.7 + 0.2 * N["agn_y"], 0.0 + 0.15 * N["agn_y"])
    nii_agn = ha_agn * 10**agn_x
    oiii_agn = hb_agn * 10**agn_y
    agn_frac = ha_agn / (ha_agn + g["ha_sf"])
    return dict(
        agn=agn, ha_agn=ha_agn, hb_agn=hb_agn, nii_agn=nii_agn, oiii_agn=oiii_agn, agn_frac=agn_frac
    )


def _measured_lines(n: int, N: dict, g: dict) -> tuple[dict, np.ndarray]:
    """Noisy measured BPT line fluxes and errors, and the measured oh_p50 (or MISSING)."""
    true_flux = {
        "nii_6584_flux": g["nii_sf"] + g["nii_agn"],
        "h_alpha_flux": g["ha_sf"] + g["ha_agn"],
        "oiii_5007_flux": g["oiii_sf"] + g["oiii_agn"],
        "h_beta_flux": g["hb_sf"] + g["hb_agn"],
    }
    e0 = {"nii_6584_flux": 5.0, "h_alpha_flux": 6.0, "oiii_5007_flux": 4.5, "h_beta_flux": 4.0}
    noise_key = {
        "nii_6584_flux": "f_nii",
        "h_alpha_flux": "f_ha",
        "oiii_5007_flux": "f_oiii",
        "h_beta_flux": "f_hb",
    }
    jitter = 10 ** (0.1 * N["err"])
    cat: dict[str, np.ndarray] = {}
    good = np.ones(n, dtype=bool)
    for line in BPT_LINES:
        err = np.sqrt((e0[line] * jitter) ** 2 + (0.03 * true_flux[line]) ** 2)
        cat[line] = true_flux[line] + err * N[noise_key[line]]
        cat[line + "_err"] = err
        good &= cat[line] > 3 * err
    with np.errstate(divide="ignore", invalid="ignore"):
        logf = np.log10(np.stack([cat[line] for line in BPT_LINES], axis=1))
        n2m, o3m = logf[:, 0] - logf[:, 1], logf[:, 2] - logf[:, 3]
    star_forming = good & ~kauffmann_agn(np.where(good, n2m, 0.0), np.where(good, o3m, 0.0))
    oh_p50 = np.where(star_forming, g["oh_fibre"] + 0.03 * N["oh_meas"], MISSING)
    return cat, oh_p50


def _contract_frame(
    n: int, start: int, U: dict, N: dict, g: dict, cat: dict, oh_p50: np.ndarray
) -> pd.DataFrame:
    """The :data:`CONTRACT_COLUMNS` (MPA-JHU names) of the catalog."""
    df = pd.DataFrame(
        {
            "objID": (OBJID_BASE + start + np.arange(n)).astype(np.int64),
            "ra": 120.0 + 120.0 * U["ra"],
            "dec": np.degrees(np.arcsin(np.sin(np.radians(60.0)) * U["dec"])),
            "z": g["z"],
            "oh_p50": oh_p50,
            "lgm_tot_p50": g["logm"] + 0.08 * N["mass_meas"],
            "sfr_tot_p50": g["logsfr"] + np.where(g["quenched"], 0.35, 0.15) * N["sfr_meas"],
        }
    )
    for line in BPT_LINES:
        df[line] = cat[line]
        df[line + "_err"] = cat[line + "_err"]
    df["bptclass"] = bpt_class(  # MPA-JHU coding, from the measured lines
        np.stack([cat[line] for line in BPT_LINES], axis=1),
        np.stack([cat[line + "_err"] for line in BPT_LINES], axis=1),
    )
    return df


def _true_columns(g: dict) -> dict:
    """The :data:`TRUE_COLUMNS` (name -> (n,) array); a flat table."""
    return {
        "true_z": g["z"],
        "true_logmass": g["logm"],
        "true_logsfr": g["logsfr"],
        "true_delta_ms": g["dms"],
        "true_log_ssfr": g["lssfr"],
        "true_quenched": g["quenched"].astype(np.int64),
        "true_bulge_frac": g["bt"],
        "true_bulge_n": g["sersic_n"],
        "true_bulge_r50_kpc": g["r50_bulge"],
        "true_disk_r50_kpc": g["r50_disk"],
        "true_r50_arcsec": g["r50_arcsec"],
        "true_cos_inc": g["cos_i"],
        "true_pa_deg": g["pa"],
        "true_disk_gr": g["disk_gr"],
        "true_dust_av": g["a_v"],
        "true_clumpiness": g["clump"],
        "true_starburst": g["starburst"].astype(np.int64),
        "true_merger": g["merger"].astype(np.int64),
        "true_agn": g["agn"].astype(np.int64),
        "true_agn_frac": g["agn_frac"],
        "true_agn_point_r": np.minimum(
            0.03 * g["ha_agn"], 0.5 * 10 ** (-0.4 * (g["mag_r"] - 22.5))
        ),
        "true_oh": g["oh"],
        "true_fibre_bias": g["fibre_bias"],
        "true_fibre_frac": g["fibre_frac"],
        "true_mag_r": g["mag_r"],
        "true_psf_fwhm": g["psf_fwhm"],
    }


def draw_catalog(n: int, seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Draw the catalog of ``n`` synthetic galaxies (no images).

    Args:
        n: number of galaxies.
        seed: survey seed; galaxy ``start + j`` depends only on (seed, start + j).
        start: index of the first galaxy (objID = OBJID_BASE + index).

    Returns:
        DataFrame with :data:`CONTRACT_COLUMNS` (fluxes in 1e-17 erg/s/cm^2, masses log Msun,
        SFR log Msun/yr, oh_p50 12+log(O/H) or -99.9) followed by :data:`TRUE_COLUMNS`:
        z; log M* [Msun]; log SFR [Msun/yr]; offset from the main sequence [dex]; log sSFR
        [1/yr]; quenched (0/1); r-band bulge-to-total; bulge Sersic n; bulge and disk half-light
        radii [kpc]; disk half-light radius [arcsec]; cos(inclination); position angle [deg];
        intrinsic disk g-r [mag]; gas A_V [mag]; clumpiness (0-1); starburst (0/1); merger (0/1);
        AGN (0/1); AGN share of fibre Halpha (0-1); AGN point-source r flux [nanomaggies]; intrinsic 12+log(O/H) [dex]; fibre bias
        [dex]; fibre aperture fraction; apparent r magnitude; PSF FWHM [arcsec].
    """
    if n < 1:
        raise UserError(f"number of galaxies must be >= 1, got {n}")
    # Every random number is drawn up front (per galaxy, seeded by (seed, index)); the steps
    # below are deterministic functions of those draws and of the earlier steps.
    U, N = _latent_draws(n, seed, start)
    g = _population(U, N)
    g |= _morphology(U, N, g)
    g |= _colours_dust(N, g)
    g |= _redshift(U, g, _Cosmo())
    g |= _metallicity(N, g)
    g |= _sf_lines(N, g)
    g |= _agn_lines(U, N, g)
    cat, oh_p50 = _measured_lines(n, N, g)
    df = _contract_frame(n, start, U, N, g, cat, oh_p50)
    true = _true_columns(g)
    for name in TRUE_COLUMNS:
        df[name] = true[name]
    return df


# --------------------------------------------------------------------------- rendering


def _render_params(cat: pd.DataFrame) -> list[dict]:
    """Per-galaxy rendering inputs (band fluxes in nanomaggies, sizes in arcsec)."""
    bt = cat["true_bulge_frac"].to_numpy()
    f_r = 10 ** (-0.4 * (cat["true_mag_r"].to_numpy() - 22.5))
    a_v = cat["true_dust_av"].to_numpy()
    ebv = 0.44 * a_v / _R_V
    disk_gr = cat["true_disk_gr"].to_numpy() + (_K_G - _K_R) * ebv
    disk_ri = 0.12 + 0.35 * cat["true_disk_gr"].to_numpy() + (_K_R - _K_I) * ebv
    kpc_per_arcsec = cat["true_disk_r50_kpc"].to_numpy() / cat["true_r50_arcsec"].to_numpy()
    point_r = cat["true_agn_point_r"].to_numpy()
    out = []
    for j in range(len(cat)):
        row = cat.iloc[j]
        out.append(
            {
                "f_r": float(f_r[j]),
                "bt": float(bt[j]),
                "bulge_n": float(row["true_bulge_n"]),
                "bulge_r50": float(row["true_bulge_r50_kpc"] / kpc_per_arcsec[j]),
                "disk_r50": float(row["true_r50_arcsec"]),
                "disk_gr": float(disk_gr[j]),
                "disk_ri": float(disk_ri[j]),
                "cos_i": float(row["true_cos_inc"]),
                "pa": float(row["true_pa_deg"]),
                "clump": float(row["true_clumpiness"]),
                "starburst": bool(row["true_starburst"]),
                "merger": bool(row["true_merger"]),
                "point_r": float(point_r[j]),
                "psf_fwhm": float(row["true_psf_fwhm"]),
            }
        )
    return out


def _band_fluxes(f_r: float, gr: float, ri: float) -> np.ndarray:
    """(3,) g, r, i fluxes from the r flux and colours."""
    return np.array([f_r * 10 ** (-0.4 * gr), f_r, f_r * 10 ** (0.4 * ri)])


def _clump_knots(
    p: dict, fd: np.ndarray, rng: np.random.Generator, gsp: object
) -> tuple[object, np.ndarray]:
    """Star-forming knots on the disk (a GalSim profile of unit flux) and their (3,) g, r, i
    fluxes [nanomaggies], a share of the disk's ``fd``; draws radii, angles, then weights."""
    import galsim

    nclump = 3 + int(round(8 * p["clump"]))
    share = 0.3 * p["clump"]
    h = p["disk_r50"] / 1.678
    rad = rng.gamma(2.0, h, nclump)
    phi = rng.uniform(0, 2 * np.pi, nclump)
    xs, ys = rad * np.cos(phi), rad * np.sin(phi) * p["cos_i"]
    c, s = np.cos(np.radians(p["pa"])), np.sin(np.radians(p["pa"]))
    w = rng.uniform(0.5, 1.5, nclump)
    w /= w.sum()
    knots = galsim.Sum(
        [
            galsim.Gaussian(sigma=0.15, flux=float(wk), gsparams=gsp).shift(
                float(c * xk - s * yk), float(s * xk + c * yk)
            )
            for wk, xk, yk in zip(w, xs, ys, strict=True)
        ]
    )
    fk = _band_fluxes(share * fd[0] * 10 ** (0.4 * 0.1), 0.1, 0.0)  # g share of the disk
    return knots, fk


def _companion(
    p: dict, size: int, rng: np.random.Generator, gsp: object
) -> tuple[object, np.ndarray]:
    """A merger's companion exponential (unit-flux GalSim profile) and its (3,) g, r, i fluxes;
    draws flux ratio, separation, angle, axis ratio, position angle in that order."""
    import galsim

    ratio = rng.uniform(0.1, 0.5)
    sep = min(rng.uniform(1.5, 3.0) * p["disk_r50"], 0.4 * size * PIXEL_SCALE)
    ang = rng.uniform(0, 2 * np.pi)
    comp = galsim.Exponential(half_light_radius=p["disk_r50"] * np.sqrt(ratio), gsparams=gsp).shear(
        q=rng.uniform(0.4, 1.0), beta=rng.uniform(0, np.pi) * galsim.radians
    )
    comp = comp.shift(sep * np.cos(ang), sep * np.sin(ang))
    return comp, _band_fluxes(ratio * p["f_r"], 0.45, 0.2)


def _draw_bands(
    comps: list[tuple[object, np.ndarray]], psf: object, size: int, offset: tuple, gsp: object
) -> np.ndarray:
    """(3, size, size) g, r, i image [nanomaggies/px]: each PSF-convolved profile times its
    (3,) band fluxes, noise-free."""
    import galsim

    bands = np.zeros((3, size, size))
    for prof, flux in comps:
        img = galsim.Convolve([prof, psf], gsparams=gsp).drawImage(
            nx=size, ny=size, scale=PIXEL_SCALE, offset=offset
        )
        bands += flux[:, None, None] * img.array[None]
    return bands


def render_galaxy(p: dict, size: int, seed: int, index: int) -> np.ndarray:
    """Render one galaxy.

    Args:
        p: rendering inputs from :func:`_render_params`.
        size: stamp side in pixels.
        seed, index: survey seed and galaxy index (seed the noise and clump positions).

    Returns:
        (size, size, 3) uint8 RGB image (Lupton asinh of i, r, g).
    """
    import galsim

    from sfnet.data.store import fits_to_rgb

    rng = np.random.default_rng([seed, index, 1])
    gsp = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=3e-3, stepk_minimum_hlr=3)
    psf = galsim.Moffat(beta=3.5, fwhm=p["psf_fwhm"], gsparams=gsp)
    pa = p["pa"] * galsim.degrees
    offset = tuple(rng.uniform(-0.5, 0.5, 2))
    comps: list[tuple[object, np.ndarray]] = []

    inc = np.arccos(p["cos_i"]) * galsim.radians
    disk = galsim.InclinedExponential(
        inc, half_light_radius=p["disk_r50"], scale_h_over_r=0.1, gsparams=gsp
    ).rotate(pa)
    fd = _band_fluxes(p["f_r"] * (1 - p["bt"]), p["disk_gr"], p["disk_ri"])
    if p["clump"] > 0.02:
        knots, fk = _clump_knots(p, fd, rng, gsp)
        comps.append((knots, fk))
        fd = np.clip(fd - fk, 0.0, None)
    comps.append((disk, fd))
    if p["bt"] > 0.01:
        q = 0.6 + 0.4 * rng.random()
        bulge = galsim.Sersic(
            p["bulge_n"], half_light_radius=max(p["bulge_r50"], 0.1), gsparams=gsp
        ).shear(q=q, beta=pa)
        comps.append((bulge, _band_fluxes(p["f_r"] * p["bt"], 0.76, 0.40)))
    if p["starburst"]:
        nuc = galsim.Gaussian(half_light_radius=max(0.3, 0.2 * p["disk_r50"]), gsparams=gsp)
        comps.append((nuc, _band_fluxes(0.3 * p["f_r"], 0.1, 0.0)))
    if p["merger"]:
        comps.append(_companion(p, size, rng, gsp))
    if p["point_r"] > 0:
        comps.append((galsim.DeltaFunction(gsparams=gsp), _band_fluxes(p["point_r"], 0.2, 0.1)))

    bands = _draw_bands(comps, psf, size, offset, gsp)
    bands += np.asarray(_SKY_SIGMA)[:, None, None] * rng.standard_normal((3, size, size))
    return fits_to_rgb(bands)  # the same Lupton mapping as real FITS cutouts


def _render_chunk(args: tuple) -> int:
    params, indices, objids, size, seed, img_dir = args
    from PIL import Image

    for p, i, oid in zip(params, indices, objids, strict=True):
        rgb = render_galaxy(p, size, seed, int(i))
        path = Path(img_dir) / f"{oid}.png"
        try:
            Image.fromarray(rgb).save(path)
        except OSError as e:  # a full disk reports no file name: name it (one line, no trace)
            if e.filename is None:
                raise OSError(e.errno, e.strerror or str(e), str(path)) from None
            raise
    return len(indices)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def _mp_context():
    """Process start method for the rendering pool.

    ``fork`` (children inherit the imported GalSim: no start-up cost) when torch is not loaded
    in this process; otherwise a ``forkserver`` that imports GalSim once (forking a process
    that runs torch's thread pools is not safe), or ``spawn`` where neither exists.
    """
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    if "torch" not in sys.modules and "fork" in methods:
        import astropy.visualization  # noqa: F401 - imported once, inherited by the workers
        import galsim  # noqa: F401

        return mp.get_context("fork")
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(
            ["galsim", "astropy.visualization", "sfnet.data.store", "sfnet.data.synthetic"]
        )
        return ctx
    return mp.get_context("spawn")


#: Peak memory of rendering one galaxy, bytes per pixel of the stamp (about 30 float64 planes:
#: three bands and GalSim's scratch images; measured at 1024 px).
RENDER_BYTES_PER_PIXEL = 256
#: Smallest image side, pixels (the network's smallest crop).
MIN_SIZE = MIN_CROP


@dataclass
class SynthConfig:
    """Settings of ``sfnet synth`` (its options are generated from these fields).

    Each field is a :func:`~sfnet.config.setting` (its help says what it is). ``n``, ``size``,
    ``seed`` and ``workers`` are the arguments of :func:`synthesize`; ``preview_n`` those of
    :func:`preview`.
    """

    n: int = setting(6000, "number of galaxies", ge=1)
    size: int = setting(64, "image side in pixels (0.262 arcsec/px)", ge=MIN_SIZE)
    seed: int = setting(0, "survey seed", ge=0, le=MAX_SEED)
    workers: int | None = setting(None, "rendering processes (none: all cores)", ge=1)
    preview_n: int = setting(40, "galaxies in the preview grid (with --preview)", ge=1)

    def validate(self) -> None:
        """Check every field against its declared type and range.

        Raises:
            ConfigError: naming ``synth.FIELD`` and the allowed range.
        """
        check_fields(self, "synth")


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux/macOS), or None where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_synth_args(n: int, size: int, seed: int, workers: int = 1) -> None:
    """Refuse, before anything is drawn or written, settings that cannot work: a value outside
    the range its :class:`SynthConfig` field declares (``n < 1``, a seed outside 0..2^32-1, a
    size below 16 px), or a size whose rendering (``workers`` galaxies at a time) would not fit
    in the memory available.

    Raises:
        UserError: naming the setting and the allowed range.
    """
    SynthConfig(n=n, size=size, seed=seed, workers=max(1, workers)).validate()
    need = RENDER_BYTES_PER_PIXEL * size * size * max(1, workers)
    avail = _available_memory()
    if avail is not None and need > avail:
        raise UserError(
            f"--size {size}: rendering {max(1, workers)} galaxy(ies) at a time needs about "
            f"{need / 2**30:.1f} GiB of memory, {avail / 2**30:.1f} GiB is available; use a "
            "smaller --size (the paper's cutouts are 64-160 px) or fewer --workers"
        )


#: What a synthetic survey folder holds (``synth``'s files, ``prepare``'s packed cache); any
#: other entry is the user's (a ``predictions.parquet`` saved beside the catalog).
SURVEY_ENTRIES = frozenset({"galaxies.csv", "synth.json", "images", "packed"})


def _check_synth_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that exists and may not be replaced: without ``overwrite``, any; with
    it, a folder that is not a synthetic survey or that holds entries sfnet did not write there
    (:data:`SURVEY_ENTRIES`; an interrupted atomic write's ``.NAME.PID-RAND.tmp`` counts as
    sfnet's), which would be deleted with it."""
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists (choose another --out, or overwrite)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not read_synth_info(out):
        raise UserError(
            f"{out}: not a synthetic survey made by sfnet synth (no synth.json); --overwrite "
            "only replaces those - choose another --out"
        )
    if out.is_dir():
        foreign = foreign_entries(out, SURVEY_ENTRIES)
        if foreign:
            raise UserError(
                f"{out}: holds {', '.join(foreign)}, which sfnet did not write; --overwrite "
                "would delete it with the old survey - move it out and run again"
            )


def _render_jobs(
    params: list[dict], objids: np.ndarray, size: int, seed: int, img_dir: Path, workers: int
) -> list[tuple]:
    """Chunks of galaxies (arguments of :func:`_render_chunk`), about 4 per worker."""
    n = len(params)
    chunk = max(8, min(100, n // (4 * workers) + 1))
    jobs = [
        (params[s : s + chunk], range(s, min(n, s + chunk)), objids[s : s + chunk])
        for s in range(0, n, chunk)
    ]
    return [(p, list(i), list(o), size, seed, str(img_dir)) for p, i, o in jobs]


def _run_render_jobs(jobs: list[tuple], workers: int, done: Callable[[int], None]) -> None:
    """Render every job, in this process (``workers == 1``) or a pool; ``done(k)`` after each."""
    if workers == 1:
        for job in jobs:
            done(_render_chunk(job))
        return
    from sfnet.data.store import die_with_parent

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_mp_context(),
        initializer=die_with_parent,  # no orphan renderers after a kill -9
        initargs=(os.getpid(),),
    )
    with pool as ex:
        futures = [ex.submit(_render_chunk, job) for job in jobs]
        for fut in as_completed(futures):
            done(fut.result())


def _write_survey_files(folder: Path, cat: pd.DataFrame, n: int, size: int, seed: int) -> None:
    """Write ``galaxies.csv`` and ``synth.json`` (n, size, seed, version, format) in ``folder``."""
    atomic_write(folder / "galaxies.csv", lambda p: cat.to_csv(p, index=False))
    atomic_write_json(
        folder / "synth.json",
        {"n": n, "size": size, "seed": seed, "version": SYNTH_VERSION, "format": "sfnet-synth"},
    )


def _replace_folder(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``, replacing an existing ``out`` (moved aside first)."""
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, trash / "old")
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


def synthesize(
    out: Path,
    n: int,
    size: int = SynthConfig.size,
    seed: int = SynthConfig.seed,
    workers: int | None = None,
    progress: bool = False,
    overwrite: bool = False,
    callback: Callable[[int], None] | None = None,
) -> Path:
    """Write a synthetic survey folder in the real dataset format.

    Writes ``galaxies.csv`` (:data:`CONTRACT_COLUMNS` + :data:`TRUE_COLUMNS`), ``images/
    {objID}.png`` ((size, size, 3) uint8 RGB, 0.262"/px) and ``synth.json`` (n, size, seed,
    version). The folder appears atomically (built in a temporary sibling, then renamed).

    Args:
        out: folder to create; must not exist unless ``overwrite``.
        n: number of galaxies.
        size: image side in pixels (>= 16).
        seed: survey seed (identical output for identical (n, size, seed)).
        workers: rendering processes (None: all available cores, or 1 for n < 64; 1: in this
            process).
        progress: show a tqdm progress bar.
        overwrite: replace an existing folder.
        callback: called with the number of galaxies finished after each chunk.

    Returns:
        ``out``.

    Example:
        >>> survey = synthesize("work/survey", n=500, size=64, seed=0)
        >>> data = sfnet.open_dataset(survey, crop=48)
    """
    out = Path(out)
    _check_synth_out(out, overwrite)
    if workers is None:  # all cores, unless starting processes costs more than it saves
        workers = _default_workers() if n >= 64 else 1
    workers = max(1, int(workers))
    check_synth_args(n, size, seed, workers)
    cat = draw_catalog(n, seed)
    params = _render_params(cat)
    objids = cat["objID"].to_numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        img_dir = tmp / "images"
        img_dir.mkdir()
        jobs = _render_jobs(params, objids, size, seed, img_dir, workers)
        bar = progress_bar(progress, n, "synth", unit="gal")

        def _done(k: int) -> None:
            bar.update(k)
            if callback is not None:
                callback(k)

        _run_render_jobs(jobs, workers, _done)
        bar.close()
        _write_survey_files(tmp, cat, n, size, seed)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_synth_info(data: Path) -> dict | None:
    """The ``synth.json`` of a synthetic survey folder, or None when absent/unreadable."""
    try:
        return json.loads((Path(data) / "synth.json").read_text())
    except (OSError, ValueError):
        return None


def is_complete(data: Path, n: int, size: int, seed: int) -> bool:
    """True when ``data`` is a finished synthetic survey with these settings."""
    info = read_synth_info(data)
    if not info or (info.get("n"), info.get("size"), info.get("seed")) != (n, size, seed):
        return False
    if info.get("version") != SYNTH_VERSION or not (Path(data) / "galaxies.csv").is_file():
        return False
    img_dir = Path(data) / "images"
    return img_dir.is_dir() and sum(1 for _ in img_dir.glob("*.png")) == n


def _preview_pick(
    data: Path, column: str, n: int, rows: Sequence[int] | None
) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    """Catalog of ``data``, ``column`` as numbers, and up to ``n`` row numbers with finite values
    (within ``rows`` if given), sorted by the column and evenly spaced in rank."""
    csv = data / "galaxies.csv"
    if not csv.is_file():
        raise DataError(f"{csv}: no such catalog")
    cat = pd.read_csv(csv, dtype={"objID": str})
    if column not in cat.columns:
        trues = ", ".join(c for c in cat.columns if c.startswith("true_")) or "none"
        raise DataError(f"{csv}: no column {column!r} (true_* columns: {trues})")
    vals = pd.to_numeric(cat[column], errors="coerce")
    ok = np.flatnonzero(np.isfinite(vals.to_numpy()))
    if rows is not None:
        ok = np.intersect1d(ok, np.asarray(rows, dtype=np.int64))
    if len(ok) == 0:
        raise DataError(f"{csv}: column {column!r} has no finite values")
    order = ok[np.argsort(vals.to_numpy()[ok], kind="stable")]
    pick = order[np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))]
    return cat, vals, pick


def _image_file(data: Path, oid: str, row: int) -> Path:
    """``data/images/{oid}.png|jpg|jpeg``, the first that exists; DataError naming the row if none."""
    from sfnet.io import objid_filename

    cands = [data / "images" / objid_filename(oid, f".{e}") for e in ("png", "jpg", "jpeg")]
    path = next((c for c in cands if c.is_file()), None)
    if path is None:
        raise DataError(f"{data / 'images'}: no image for objID {oid} (catalog row {row})")
    return path


def preview(
    data: Path,
    column: str,
    out: Path,
    n: int = SynthConfig.preview_n,
    ncols: int = 8,
    rows: Sequence[int] | None = None,
) -> Path:
    """Write a PNG grid of galaxies sorted by ``column`` (evenly spaced in rank).

    Args:
        data: dataset folder (``galaxies.csv`` + ``images/{objID}.png|jpg``).
        column: catalog column to sort by (e.g. ``true_cos_inc``).
        out: PNG path to write.
        n: galaxies shown; ``ncols`` per row.
        rows: explicit catalog row numbers to show instead (still sorted by ``column``).

    Returns:
        ``out``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    SynthConfig(preview_n=n).validate()  # n >= 1, named synth.preview_n
    data = Path(data)
    cat, vals, pick = _preview_pick(data, column, n, rows)
    nrows = int(np.ceil(len(pick) / ncols))
    fig = Figure(figsize=(1.3 * ncols, 1.45 * nrows + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    fig.suptitle(f"{data.name}: sorted by {column} (low to high)", fontsize=9)
    for k, row in enumerate(pick):
        path = _image_file(data, cat["objID"].iloc[row], row)
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.imshow(np.asarray(Image.open(path).convert("RGB")))
        ax.set_title(f"{vals.iloc[row]:.3g}", fontsize=7, pad=2)
        ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92, wspace=0.05, hspace=0.25)

    def _write(p: Path) -> None:
        fig.savefig(p, format="png")

    atomic_write(Path(out), _write)
    return Path(out)
