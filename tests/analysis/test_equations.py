import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sfnet.analysis.activations import SparseActivations, feature_label, feature_stats
from sfnet.analysis.equations import (
    RATIO_NAMES,
    build_equations,
    equations_for_run,
    linear_equations,
    ratio_equations,
    to_markdown,
    write_equations,
)
from sfnet.model import SparseFeatureNet
from sfnet.physics import bpt_ratios

LINES = ["log_nii_6584_flux", "log_h_alpha_flux", "log_oiii_5007_flux", "log_h_beta_flux"]


def test_linear_equation_hand_computed():
    # y = 10 + 2 * (0.5 + 1 a0 + 2 a1); feature 1 never active (max 0) -> dropped
    eqs = linear_equations(
        weight=np.array([[1.0, 2.0]]),
        bias=np.array([0.5]),
        target_mean=[10.0],
        target_std=[2.0],
        fmax=np.array([3.0, 0.0]),
        target_names=["oh_p50"],
        mean_strength=np.array([0.25, 0.0]),
    )
    (e,) = eqs
    assert e.intercept == pytest.approx(11.0)
    np.testing.assert_array_equal(e.features, [0])
    np.testing.assert_allclose(e.coefficients, [6.0])  # std * w * max = 2 * 1 * 3
    np.testing.assert_allclose(e.mean_contribution, [1.5])
    assert e.coefficient(1) == 0.0
    # a0 = 1.5 -> A = 0.5 -> 11 + 3 = 14 = 10 + 2 * (0.5 + 1.5)
    acts = SparseActivations(np.arange(1), np.arange(1), np.array([[0]]), np.array([[1.5]]), d=2)
    assert e.evaluate(acts, np.array([3.0, 0.0]))[0] == pytest.approx(14.0)


@pytest.fixture(scope="module")
def tiny_net_outputs():
    torch.manual_seed(0)
    net = SparseFeatureNet(k=3, n_targets=4).eval()
    with torch.no_grad():
        net.head.bias.copy_(torch.tensor([0.3, -0.2, 0.1, 0.5]))
        out = net(torch.randn(24, 3, 32, 32))
    mean = np.array([1.5, 2.0, 0.8, 1.4])
    std = np.array([0.4, 0.3, 0.5, 0.25])
    phys = out.predictions.double().numpy() * std + mean
    acts = SparseActivations(
        objid=np.arange(24),
        rows=np.arange(24),
        indices=out.indices.numpy(),
        values=out.values.numpy(),
        d=512,
        predictions=phys.astype(np.float32),
    )
    return net, acts, mean, std, phys


def test_equations_reproduce_model_predictions(tiny_net_outputs):
    net, acts, mean, std, phys = tiny_net_outputs
    assert (acts.values > 0).any()
    labels = {f: feature_label("bpt_lines", f) for f in range(512)}
    eqs = build_equations(
        acts,
        net.head.weight.detach().double().numpy(),
        net.head.bias.detach().double().numpy(),
        mean,
        std,
        LINES,
        labels,
    )
    values = eqs.evaluate(acts)
    for t, name in enumerate(LINES):
        np.testing.assert_allclose(values[name], phys[:, t], atol=2e-5)
    # BPT ratio equations equal the ratios of the predicted lines ...
    x, y = bpt_ratios(phys)
    np.testing.assert_allclose(values[RATIO_NAMES[0]], x, atol=4e-5)
    np.testing.assert_allclose(values[RATIO_NAMES[1]], y, atol=4e-5)
    # ... and their coefficients are differences of the line coefficients
    n2, ha, o3, hb = (eqs[n] for n in LINES)
    np.testing.assert_allclose(eqs[RATIO_NAMES[0]].coefficients, n2.coefficients - ha.coefficients)
    np.testing.assert_allclose(eqs[RATIO_NAMES[1]].coefficients, o3.coefficients - hb.coefficients)
    assert eqs[RATIO_NAMES[1]].intercept == pytest.approx(o3.intercept - hb.intercept)
    # mean contribution = coefficient * mean A_f
    stats = feature_stats(acts)
    f0 = int(eqs.ranked[0])
    assert n2.mean_contribution[list(n2.features).index(f0)] == pytest.approx(
        n2.coefficient(f0) * stats.mean_strength[f0]
    )


def test_equations_for_run_and_files(tiny_net_outputs, tmp_path):
    net, acts, mean, std, phys = tiny_net_outputs
    meta = SimpleNamespace(target_mean=list(mean), target_std=list(std), target_names=LINES)
    from sfnet.runs import Run

    run = SimpleNamespace(model=net, meta=meta)
    run.head = lambda: Run.head(run)  # the one read of the head weights
    eqs = equations_for_run(run, acts, "bpt_lines")
    assert [e.name for e in eqs.equations] == LINES + list(RATIO_NAMES)
    md, js = write_equations(eqs, tmp_path)
    text = md.read_text()
    assert "## log [NII]/H-alpha" in text and f"A_SL{int(eqs.ranked[0])}" in text
    data = json.loads(js.read_text())
    # the JSON alone (intercept, coefficients, max activations) reproduces the predictions
    fmax = {f["feature"]: f["max_activation"] for f in data["features"]}
    e0 = data["equations"][0]
    pred = np.full(acts.n, e0["intercept"])
    for term in e0["terms"]:
        f = term["feature"]
        a = np.where(acts.indices == f, acts.values, 0).sum(1) / fmax[f]
        pred += term["coefficient"] * a
    np.testing.assert_allclose(pred, phys[:, 0], atol=2e-5)


def test_ratio_equations_need_all_four_lines():
    eqs = linear_equations(np.ones((1, 3)), [0.0], [8.9], [0.2], np.ones(3), ["oh_p50"])
    assert ratio_equations(eqs) == []
    assert "12 + log(O/H)" in to_markdown(
        build_equations(
            SparseActivations(np.arange(2), np.arange(2), [[0], [1]], [[1.0], [2.0]], d=3),
            np.ones((1, 3)),
            np.zeros(1),
            [8.9],
            [0.2],
            ["oh_p50"],
            {0: "Z0", 1: "Z1", 2: "Z2"},
        )
    )
