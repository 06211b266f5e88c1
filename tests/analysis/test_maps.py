"""Spatial feature maps and contribution maps reproduce what the model computes."""

import numpy as np
import pytest

from sfnet.analysis.maps import contribution_maps, head_of, native_resolution, upsample
from sfnet.predict import pooled_features, predict, spatial_features
from sfnet.runs import load_run


@pytest.fixture(scope="module")
def loaded(analysed_runs):
    run = load_run(analysed_runs[0])  # 64 px, k = 4, four targets
    return run, run.load_data()


def test_spatial_map_pixel_mean_is_the_pooled_activation(loaded):
    run, data = loaded
    rows = np.array([5, 0, 17])
    maps = spatial_features(run, data.images, rows)
    assert maps.shape == (3, run.meta.d, 2, 2)  # 64 px -> 2x2 for resnet18
    assert (maps >= 0).all()
    pooled = pooled_features(run, data.images, rows)
    np.testing.assert_allclose(maps.mean(axis=(2, 3)), pooled, rtol=1e-5, atol=1e-6)
    assert native_resolution(maps, 64) == "2x2 at 64 px"


def test_spatial_features_select_channels_per_galaxy(loaded):
    run, data = loaded
    rows = np.arange(4)
    full = spatial_features(run, data.images, rows)
    pred = predict(run, data.images, rows)
    own = spatial_features(run, data.images, rows, features=pred.indices, batch_size=3)
    picked = np.take_along_axis(full, pred.indices[:, :, None, None], 1)
    np.testing.assert_allclose(own, picked, rtol=1e-5, atol=1e-5)  # other batch size: rounding
    np.testing.assert_allclose(own.mean(axis=(2, 3)), pred.values, rtol=1e-5, atol=1e-6)
    same = spatial_features(run, data.images, rows, features=[3, 7])
    np.testing.assert_allclose(same, full[:, [3, 7]], rtol=1e-6, atol=1e-6)


def test_contribution_map_mean_plus_intercept_is_the_prediction(loaded):
    run, data = loaded
    rows = np.arange(0, len(data.images), 4)
    pred = predict(run, data.images, rows)
    maps = spatial_features(run, data.images, rows, features=pred.indices)
    w, b = head_of(run)
    cm = contribution_maps(
        maps, pred.indices, pred.values, w, b, run.meta.target_mean, run.meta.target_std
    )
    assert cm.maps.shape == (len(rows), len(run.meta.target_names), 2, 2)
    np.testing.assert_allclose(cm.predictions(), pred.predictions, atol=1e-4)
    per = cm.intercept[None] + cm.per_feature.sum(axis=1)
    np.testing.assert_allclose(per, pred.predictions, atol=1e-4)
    # the maps are not flat: the spatial structure is real, not the mean spread out
    assert np.ptp(cm.maps, axis=(2, 3)).max() > 0


def test_inactive_kept_features_contribute_nothing():
    maps = np.ones((1, 2, 2, 2))
    w = np.array([[1.0, 2.0, 3.0]])
    cm = contribution_maps(maps, np.array([[0, 2]]), np.array([[1.0, 0.0]]), w, [0.5], [0], [2])
    np.testing.assert_allclose(cm.maps, 2.0)  # std * w_0 * 1, feature 2 inactive
    np.testing.assert_allclose(cm.predictions(), [[1.0 + 2.0]])


def test_upsample_keeps_a_constant_map_and_shape():
    up = upsample(np.full((3, 2, 2), 0.7), 16)
    assert up.shape == (3, 16, 16)
    np.testing.assert_allclose(up, 0.7, rtol=1e-6)


def test_upsample_puts_each_cell_on_its_receptive_field_centre():
    # resnet18's cell (1, 1) at 64 px is centred on pixel (32, 32), the image centre
    m = np.zeros((2, 2))
    m[1, 1] = 1.0
    up = upsample(m, 64)
    assert up[32, 32] == 1.0 and up[63, 63] == 1.0 and up[0, 0] == 0.0
    assert up[16, 32] == 0.5  # halfway between the cell centres at rows 0 and 32


def test_maps_of_a_bf16_run_are_computed_at_its_precision(tmp_path):
    """An --amp run predicts under bf16 autocast; its maps must too, or their pixel means drift
    from the pooled activations (on a CPU without native bf16 the run is fp32 and this holds
    trivially)."""
    from sfnet.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from sfnet.data.dataset import save_npz
    from sfnet.train import fit
    from tests.conftest import make_toy_images

    images, y = make_toy_images(48, size=64)
    save_npz(tmp_path / "t.npz", images, y, np.arange(48), ["radius", "redness"])
    cfg = RunConfig(
        DataConfig(path=str(tmp_path / "t.npz"), crop=64),
        ModelConfig(k=4),
        TrainConfig(epochs=1, batch_size=16, lr=0.01, device="cpu", amp=True),
    )
    fit(cfg, tmp_path / "run")
    run = load_run(tmp_path / "run")
    x, rows = run.load_data().images, np.arange(8)
    maps = spatial_features(run, x, rows)
    np.testing.assert_allclose(maps.mean(axis=(2, 3)), pooled_features(run, x, rows), atol=1e-5)
