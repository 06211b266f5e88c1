"""The oracle: true latent factors predict the targets better than the mean, not perfectly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sfnet.analysis.oracle import oracle_rmse, oracle_scores
from sfnet.data.batches import split_indices
from sfnet.data.catalog import select_target
from sfnet.data.synthetic import HIDDEN_TRUE_COLUMNS, draw_catalog
from sfnet.errors import DataError


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    return draw_catalog(1500, seed=2)


def test_metallicity_oracle_between_noise_floor_and_mean(catalog) -> None:
    r = oracle_scores(catalog, "metallicity", seed=0)
    assert list(r.oracle) == ["oh_p50"]
    assert not set(HIDDEN_TRUE_COLUMNS) & set(r.factors)
    assert "true_cos_inc" in r.factors
    # The intrinsic scatter (>= 0.07 dex) is invisible, so the oracle cannot be perfect ...
    assert 0.06 < r.oracle["oh_p50"] < 0.8 * r.mean["oh_p50"]
    # ... and the mean predictor scores the same split as a training run would.
    sel = select_target(catalog, "metallicity")
    tr, va = split_indices(len(sel.y), 0.2, 0)
    assert (r.n_train, r.n_val) == (len(tr), len(va))
    y = sel.y[:, 0].astype(np.float64)
    assert r.mean["oh_p50"] == pytest.approx(np.sqrt(np.mean((y[va] - y[tr].mean()) ** 2)))
    assert oracle_rmse(catalog, "metallicity", seed=0) == r.oracle  # deterministic


def test_line_oracle_beats_the_mean_for_every_line(catalog) -> None:
    r = oracle_scores(catalog, "bpt_lines", seed=1)
    rmse, mean = r.oracle, r.mean
    assert list(rmse) == [
        "log_nii_6584_flux",
        "log_h_alpha_flux",
        "log_oiii_5007_flux",
        "log_h_beta_flux",
    ]
    for name, v in rmse.items():
        assert 0.0 < v < 0.7 * mean[name], name


def test_needs_true_columns(catalog) -> None:
    real_like = catalog[[c for c in catalog.columns if not c.startswith("true_")]]
    with pytest.raises(DataError, match="true_"):
        oracle_rmse(real_like, "metallicity")
