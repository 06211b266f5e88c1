import numpy as np
import pandas as pd
import pytest

from sfnet.analysis.groundtruth import (
    dense_units,
    factor_matches,
    sfnet_groundtruth,
    summary,
    true_factor_columns,
)
from sfnet.errors import DataError


def factors(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "true_mass": rng.normal(size=n),
            "true_dust": rng.normal(size=n),
            "true_agn": rng.random(n) < 0.2,
        }
    )


def test_true_factor_columns_filters():
    df = factors()
    df["true_const"] = 1.0
    df["true_name"] = "x"
    df["lgm_tot_p50"] = 1.0
    assert true_factor_columns(df) == ["true_mass", "true_dust", "true_agn"]


def test_monosemantic_and_mixed_units():
    f = factors()
    m, d = f["true_mass"].to_numpy(), f["true_dust"].to_numpy()
    units = np.column_stack([np.exp(m), -d, m + d])  # monotone in mass; anti dust; a mixture
    res = factor_matches(units, ["U0", "U1", "U2"], f)
    assert res[0].best_factor == "true_mass" and res[0].best_rho == pytest.approx(1.0)
    assert res[0].margin > 0.8
    assert res[1].best_factor == "true_dust" and res[1].best_rho == pytest.approx(-1.0)
    # the mixture tracks both factors about equally: small margin
    assert {res[2].best_factor, res[2].second_factor} == {"true_mass", "true_dust"}
    assert res[2].margin < 0.15
    s = summary(res)
    assert s["mean_best_abs_rho"] == pytest.approx(np.mean([r.best_abs for r in res]))
    assert s["mean_margin"] == pytest.approx(np.mean([r.margin for r in res]))
    with pytest.raises(DataError, match="true_"):
        factor_matches(units, ["a", "b", "c"], f[[]])


def test_sfnet_groundtruth_none_on_real_catalog():
    cat = pd.DataFrame({"oh_p50": np.arange(5.0)})
    assert sfnet_groundtruth(np.ones((5, 1)), ["Z1"], cat) is None
    rep = sfnet_groundtruth(np.arange(5.0)[:, None], ["Z1"], cat.assign(true_z=np.arange(5.0)))
    assert rep["units"][0]["best_factor"] == "true_z"
    assert rep["mean_best_abs_rho"] == pytest.approx(1.0)


def test_dense_units_pca_and_most_variable_neurons():
    rng = np.random.default_rng(1)
    n, d = 500, 12
    latent = rng.normal(size=n)
    x = rng.normal(0, 0.1, (n, d))
    x[:, 5] += 3 * latent  # the dominant direction, and the most variable neuron
    x[:, 2] += rng.normal(0, 1.0, n)  # second most variable neuron
    pcs, pc_names, neurons, neuron_names = dense_units(x[:400], x[400:], k=2)
    assert pc_names == ["PC1", "PC2"] and pcs.shape == (100, 2)
    assert abs(np.corrcoef(pcs[:, 0], latent[400:])[0, 1]) > 0.99
    assert neuron_names == ["neuron 5", "neuron 2"]
    np.testing.assert_array_equal(neurons, x[400:][:, [5, 2]])
