"""SAE latents in the atlas and the factors interpretability is scored against
(sfnet.workflows.sparsity, issue 22)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from sfnet.analysis.sae import SAEConfig, SparseAutoencoder
from sfnet.workflows.sparsity import (
    factor_row,
    factor_table,
    factors_markdown,
    latent_run,
    sae_feature_pages,
)


@pytest.fixture(scope="module")
def dense_sae(analysed_runs):
    """The 64 px dense run of the atlas fixture (2x2 feature maps), its galaxies split as in
    training, and a small SAE on its pooled features."""
    from sfnet.predict import pooled_features
    from sfnet.runs import load_run

    _, dense_dir, _ = analysed_runs
    dense = load_run(dense_dir)
    data = dense.data()
    tr, va = dense.split(len(data))
    feats = pooled_features(dense, data.images)
    sae = SparseAutoencoder.fit(feats[tr], SAEConfig(k=2, expansion=1, steps=30))
    t = SimpleNamespace(target="bpt_lines", dense=dense, data=data, feats=feats, tr=tr, va=va)
    return t, sae


def test_a_latent_map_averages_to_the_latents_pre_activation(dense_sae, tmp_path):
    from sfnet.predict import spatial_features

    t, sae = dense_sae
    rows = t.va[:5]
    latents = [0, 7, 300]
    maps = spatial_features(latent_run(tmp_path, sae, t.dense), t.data.images, rows, latents)
    assert maps.shape == (5, 3, 2, 2)  # the trunk's 2x2 grid at 64 px
    with torch.no_grad():
        pre = sae.pre_activations(torch.as_tensor(t.feats[rows])).numpy()[:, latents]
    np.testing.assert_allclose(maps.mean(axis=(2, 3)), pre, rtol=1e-4, atol=1e-4)
    assert np.ptp(maps, axis=(2, 3)).max() > 0  # a map, not a constant


def test_sae_latents_get_the_feature_pages_and_atlas_of_an_sfnet(dense_sae, tmp_path):
    t, sae = dense_sae
    codes = sae.encode(t.feats)
    s = sae_feature_pages(tmp_path, sae, codes, t, 1, extra={"sae_rmse": 0.5})
    top = s["frequent_features"]
    assert len(top) == 1 and all(lab.startswith("L") for lab in top)
    table = pd.read_csv(tmp_path / "latents.csv")
    assert list(table["label"][: len(top)]) == top
    for lab in top:  # top-galaxy grid (with the BPT panel: bpt_lines) and spatial maps
        assert (tmp_path / s["figures"][f"feature_{lab}"]).stat().st_size > 1000
        assert (tmp_path / s["figures"][f"maps_{lab}"]).stat().st_size > 1000
    html = (tmp_path / "report.html").read_text()
    assert "SAE latent atlas" in html and "<script" not in html
    for lab in top:
        assert f'id="{lab}"' in html
    # per latent: grid and maps; plus histograms and the correlation matrix
    assert html.count("data:image/png;base64,") >= 2 * len(top) + 2
    assert "encoder direction" in html


def test_real_data_factors_are_catalog_columns_beyond_the_target_or_image_measurements():
    from tests.analysis.test_photometry import _cutout

    cat = pd.DataFrame({"objID": [1, 2, 3, 4], "oh_p50": [8.7, 8.9, 9.0, 8.8]})
    factors, kind = factor_table(cat, "metallicity")
    assert kind == "measured" and factors.shape[1] == 0  # the target alone is no factor
    no = factors_markdown(pd.DataFrame([factor_row("metallicity", factors, kind)]))
    assert "no interpretability scores" in no and "oh_p50" in no

    cat["lgm_tot_p50"] = [9.5, 10.0, 10.5, 11.0]
    images = np.stack([_cutout(2 + i, 0.5 + 0.1 * i, 1.0, size=32, seed=i) for i in range(4)])
    factors, kind = factor_table(cat, "metallicity", images)
    assert list(factors.columns) == ["lgm_tot_p50", "img_gr_colour", "img_r50_px", "img_axis_ratio"]
    assert factors["img_r50_px"].is_monotonic_increasing
    text = factors_markdown(pd.DataFrame([factor_row("metallicity", factors, kind)]))
    assert "4 measured factors" in text and "img_axis_ratio" in text


def test_galaxies_missing_a_factor_are_left_out_of_the_scores_not_an_error():
    from sfnet.workflows.sparsity import unit_score_row

    rng = np.random.default_rng(0)
    f = rng.normal(size=(60, 3))
    units = np.column_stack([f[:, 0], f[:, 1]]) + 0.05 * rng.normal(size=(60, 2))
    factors = pd.DataFrame(f, columns=["a", "b", "img_r50_px"])
    factors.iloc[[3, 40], 2] = np.nan  # two cutouts the moments could not measure
    row = unit_score_row(units, ["u0", "u1"], factors, np.arange(40), np.arange(40, 60))
    assert row["best_factors"] == "a b" and row["best_abs_rho"] > 0.95
    assert np.isfinite([row["disentanglement"], row["completeness"], row["mig"]]).all()
