"""The paper's definitions (sfnet.analysis.paper), each on hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sfnet.analysis.activations import SparseActivations, activation_frequency, feature_max
from sfnet.analysis.paper import (
    agn_classes,
    dense_activations,
    masked_head_predictions,
    masked_head_rmse,
    paper_agn_labels,
    paper_agn_svm,
    pre_topk_activations,
    variance_share,
)
from sfnet.errors import DataError
from sfnet.physics import bpt_class


def test_masked_head_zeroes_other_features_without_refit():
    a = np.array([[1.0, 2.0, 3.0], [0.0, 4.0, 1.0]])
    w = np.array([[1.0, 10.0, 100.0]])
    b = np.array([0.5])
    # keep feature 1 only: 10*2 + 0.5 = 20.5 and 10*4 + 0.5 = 40.5
    p = masked_head_predictions(a, w, b, [1])
    assert p[:, 0].tolist() == [20.5, 40.5]
    # physical units: mean 1 + std 2 * output
    p = masked_head_predictions(a, w, b, [0, 2], target_mean=np.array([1.0]), target_std=[2.0])
    assert p[:, 0].tolist() == [1 + 2 * 301.5, 1 + 2 * 100.5]
    # the RMSE of those predictions against hand-set targets: errors 1 and 3 -> sqrt(5)
    y = p + np.array([[1.0], [-3.0]])
    assert masked_head_rmse(p, y)[0] == pytest.approx(np.sqrt(5.0))


def test_masked_head_rejects_mismatched_weight():
    with pytest.raises(DataError, match="do not match"):
        masked_head_predictions(np.zeros((2, 3)), np.zeros((1, 4)), np.zeros(1), [0])


def test_variance_share_is_ratio_of_summed_variances():
    # column variances (population): [1, 0, 4] (values {0,2}, const, {0,4})
    a = np.array([[0.0, 5.0, 0.0], [2.0, 5.0, 4.0]])
    assert variance_share(a, [0]) == pytest.approx(1 / 5)
    assert variance_share(a, [2, 1]) == pytest.approx(4 / 5)
    assert variance_share(a, [0, 1, 2]) == pytest.approx(1.0)
    with pytest.raises(DataError, match="no variance"):
        variance_share(np.ones((3, 2)), [0])


def test_dense_activations_places_values_at_their_indices():
    acts = SparseActivations(
        objid=np.array([1, 2]),
        rows=np.array([0, 1]),
        indices=np.array([[2, 0], [1, 3]]),
        values=np.array([[0.5, 0.0], [1.5, 2.0]]),
        d=4,
    )
    assert dense_activations(acts).tolist() == [[0.0, 0.0, 0.5, 0.0], [0.0, 1.5, 0.0, 2.0]]


def test_pre_topk_statistics_count_nonzero_pooled_values():
    pooled = np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 4.0], [0.0, 0.0, 1.0], [1.0, 2.0, 0.0]])
    acts = pre_topk_activations(pooled, np.arange(4), np.arange(4) + 10)
    # activated (non-zero) in 2/4, 2/4, 3/4 galaxies; max 3, 2, 4 (the A_f scales)
    assert activation_frequency(acts).tolist() == [0.5, 0.5, 0.75]
    assert feature_max(acts).tolist() == [3.0, 2.0, 4.0]


def test_bpt_class_follows_mpa_jhu_coding():
    err = np.ones((6, 4))
    f = np.array(
        [
            # [NII], Ha, [OIII], Hb: log N2/Ha, log O3/Hb
            [10.0, 100.0, 20.0, 40.0],  # -1.0, -0.30: below Kauffmann -> 1 star-forming
            [50.0, 100.0, 40.0, 40.0],  # -0.30, 0.0: Kauffmann 0.16 > ... composite check below
            [100.0, 100.0, 400.0, 40.0],  # 0.0, 1.0: above Kewley (1.19+0.61/-0.47=-0.11) -> 4
            [1.0, 100.0, 20.0, 40.0],  # [NII] S/N 1 -> low-S/N; Ha, [NII] S/N < 2 -> -1
            [10.0, 100.0, 2.0, 40.0],  # [OIII] S/N 2: weak; N2/Ha -1 < -0.4 -> 2
            [60.0, 100.0, 2.0, 40.0],  # weak, N2/Ha -0.22 >= -0.4 -> 5 (low-S/N LINER)
        ]
    )
    # row 1: x=-0.30: Kauffmann 0.61/(-0.35)+1.3 = -0.443 < y=0 -> above Kauffmann;
    # Kewley 0.61/(-0.77)+1.19 = 0.398 > 0 -> below Kewley: composite (3)
    assert bpt_class(f, err).tolist() == [1, 3, 4, -1, 2, 5]


def test_agn_labels_from_bptclass_exclude_composites():
    is_agn, used = paper_agn_labels(np.array([1, 2, 3, 4, 5, -1]))
    assert is_agn.tolist() == [False, False, False, True, True, False]
    assert used.tolist() == [True, True, False, True, True, False]


def test_agn_classes_prefers_the_column_and_says_when_derived():
    cat = pd.DataFrame({"bptclass": [1, 4, 3]})
    cls, src = agn_classes(cat)
    assert cls.tolist() == [1, 4, 3] and "bptclass column" in src
    lines = ["nii_6584_flux", "h_alpha_flux", "oiii_5007_flux", "h_beta_flux"]
    cat = pd.DataFrame({c: [v] for c, v in zip(lines, [100.0, 100.0, 400.0, 40.0], strict=True)})
    for c in lines:
        cat[c + "_err"] = 1.0
    cls, src = agn_classes(cat)
    assert cls.tolist() == [4] and "derived" in src
    with pytest.raises(DataError, match="no 'bptclass' column"):
        agn_classes(pd.DataFrame({"oh_p50": [9.0]}))


def test_paper_agn_svm_scores_only_sf_and_agn():
    rng = np.random.default_rng(0)
    n = 200
    classes = rng.choice([1, 2, 3, 4, 5], size=n)
    x = rng.normal(size=(n, 3))
    x[:, 1] += np.where(np.isin(classes, [4, 5]), 3.0, 0.0)  # feature 1 separates AGN
    res = paper_agn_svm(x[:150], classes[:150], x[150:], classes[150:], [1])
    assert res.n_val == int(np.isin(classes[150:], [1, 2, 4, 5]).sum())
    assert res.accuracy > 0.9 and res.f1 > 0.85
    noise = paper_agn_svm(x[:150], classes[:150], x[150:], classes[150:], [0])
    assert noise.accuracy < res.accuracy
    with pytest.raises(DataError, match="both classes"):
        paper_agn_svm(x, np.ones(n), x, classes, [0])


def test_rank_by_frequency_breaks_pre_topk_ties_by_post_topk_use():
    from sfnet.analysis.activations import rank_features

    pre = np.array([1.0, 1.0, 1.0, 0.5, 0.0])
    post = np.array([0.1, 0.0, 0.7, 0.9, 0.0])
    # all of 0..2 fire before TopK; the head mostly uses 2, then 0; 4 never fires: dropped
    assert rank_features(pre, tie_break=post).tolist() == [2, 0, 1, 3]
    assert rank_features(post).tolist() == [3, 2, 0]
