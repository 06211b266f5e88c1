import numpy as np
import pytest
import torch

from sfnet.analysis.sae import (
    SAEConfig,
    SparseAutoencoder,
    dictionary_recovery,
    planted_codes,
)
from sfnet.errors import DataError, RunFolderError


@pytest.fixture(scope="module")
def planted():
    """2000 examples of 3-sparse non-negative codes over a 48-atom dictionary in 24 dims."""
    x, dictionary, codes = planted_codes(2000, 24, 48, 3, seed=0)
    torch.set_num_threads(1)
    model = SparseAutoencoder.fit(
        x, SAEConfig(k=3, n_latents=96, steps=300, batch_size=256, lr=3e-3, seed=1)
    )
    return x, dictionary, codes, model


def test_recovers_a_planted_dictionary(planted):
    x, dictionary, _, model = planted
    cos = dictionary_recovery(model.directions(), dictionary)
    assert (cos > 0.9).mean() >= 0.9  # most planted atoms found as a decoder direction
    assert model.meta["train_fvu"] < 0.15
    assert model.fvu(x) == pytest.approx(model.meta["train_fvu"], abs=1e-6)


def test_codes_are_k_sparse_and_decoder_unit_norm(planted):
    x, _, _, model = planted
    codes = model.encode(x[:100])
    assert codes.shape == (100, 96) and (codes >= 0).all()
    assert ((codes > 0).sum(1) <= 3).all()
    np.testing.assert_allclose(np.linalg.norm(model.directions(), axis=1), 1.0, atol=1e-5)
    # decode(encode(x)) is the reconstruction, in the input's units
    rec = model.decode(codes)
    assert np.mean((rec - x[:100]) ** 2) < 0.2 * np.var(x[:100], axis=0).sum()


def test_save_load_roundtrip(planted, tmp_path):
    x, _, _, model = planted
    model.save(tmp_path / "sae")
    assert not list((tmp_path / "sae").glob("*.tmp"))
    back = SparseAutoencoder.load(tmp_path / "sae")
    np.testing.assert_array_equal(back.encode(x[:50]), model.encode(x[:50]))
    assert back.config.k == 3 and back.config.n_latents == 96
    assert back.meta["train_fvu"] == pytest.approx(model.meta["train_fvu"])
    import sfnet

    assert sfnet.SparseAutoencoder is SparseAutoencoder


def test_bad_inputs_are_one_clear_error(planted, tmp_path):
    _, _, _, model = planted
    with pytest.raises(DataError, match=r"\(N, 24\)"):
        model.encode(np.zeros((5, 7)))
    with pytest.raises(DataError, match="non-finite"):
        SparseAutoencoder.fit(np.full((10, 4), np.nan), SAEConfig(steps=1))
    with pytest.raises(RunFolderError, match="not an SAE folder"):
        SparseAutoencoder.load(tmp_path)
