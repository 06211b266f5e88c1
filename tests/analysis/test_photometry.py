"""Stand-in factors measured on the cutouts (sfnet.analysis.photometry)."""

import galsim
import numpy as np

from sfnet.analysis.photometry import IMAGE_FACTORS, image_measurements


def _cutout(hlr, q, g_over_r, size=48, seed=0):
    """A (3, size, size) uint8 gri cutout of a Gaussian galaxy of half-light radius ``hlr`` px
    and axis ratio ``q``, its g channel ``g_over_r`` times its r channel, on a noisy sky."""
    prof = galsim.Gaussian(half_light_radius=hlr).shear(q=q, beta=35 * galsim.degrees)
    im = prof.drawImage(nx=size, ny=size, scale=1.0, method="no_pixel").array
    im = im / im.max()
    rng = np.random.default_rng(seed)
    rgb = np.stack([0.9 * im, 0.8 * im, 0.8 * g_over_r * im]) * 220 + 20
    return np.clip(rgb + rng.normal(0, 1.0, rgb.shape), 0, 255).round().astype(np.uint8)


def test_recovers_the_size_axis_ratio_and_colour_of_a_known_galaxy():
    images = np.stack([_cutout(4.0, 0.5, 0.6), _cutout(2.5, 0.9, 1.2, seed=1)])
    m = image_measurements(images)
    assert list(m.columns) == list(IMAGE_FACTORS) and len(m) == 2
    np.testing.assert_allclose(m["img_r50_px"], [4.0, 2.5], rtol=0.05)
    np.testing.assert_allclose(m["img_axis_ratio"], [0.5, 0.9], atol=0.04)
    np.testing.assert_allclose(m["img_gr_colour"], -2.5 * np.log10([0.6, 1.2]), atol=0.05)


def test_a_blank_cutout_is_nan_not_an_error():
    blank = np.full((1, 3, 32, 32), 20, np.uint8)
    m = image_measurements(blank)
    assert m.isna().all(axis=None)
