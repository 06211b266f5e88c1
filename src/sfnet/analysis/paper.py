"""The paper's own definitions of the numbers it publishes, each in one place.

Wu (2025) and its public notebooks compute some quantities differently from sfnet's defaults;
these functions compute them the paper's way, so that ``sfnet reproduce`` can put sfnet's
value next to the paper's:

- :func:`masked_head_predictions` / :func:`masked_head_rmse`: "RMSE with the top m features"
  = the *trained* linear head applied to the sparse activations with every other feature set to
  zero (no refit). sfnet's least-squares refit on m features
  (:func:`sfnet.analysis.activations.variance_explained`) is a different number, reported as "refit".
- :func:`variance_share`: "the eight most frequently activated features explain 99.99 % of the
  variance" = sum of the variances of the chosen features' activations / the same sum over all
  d features.
- :func:`pre_topk_activations`: f_activated, A_f, the top-9 grids and BPT colours taken from
  the pooled d features *before* TopK (a feature counts as activated where its pooled value is
  non-zero). sfnet's default is the post-TopK activations (what the head sees).
- :func:`agn_classes` / :func:`paper_agn_labels`: AGN labels from MPA-JHU ``bptclass``
  (star-forming = {1, 2}, AGN = {4, 5}; composites 3 and unclassifiable excluded from training
  and scoring); derived from the four line fluxes with :func:`sfnet.physics.bpt_class` where a
  catalog has no ``bptclass`` column.
- :func:`paper_agn_svm`: scikit-learn ``LinearSVC`` on the activations (no standardization),
  trained on the training split, scored on the validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sfnet.analysis.activations import SparseActivations
from sfnet.errors import DataError
from sfnet.physics import BPT_LINES, bpt_class

#: MPA-JHU ``bptclass`` codes the paper counts as star-forming and as AGN.
SF_CLASSES = (1, 2)
AGN_CLASSES = (4, 5)
#: The two definitions of the activation statistics (``sfnet analyze --stats``).
STATS_CHOICES = ("post-topk", "pre-topk")
STATS_TITLES = {
    "post-topk": "post-TopK activations (what the linear head sees; sfnet's default)",
    "pre-topk": "pooled features before TopK, non-zero = activated (the paper's notebooks)",
}


def masked_head_predictions(
    activations: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    features: Sequence[int],
    target_mean: np.ndarray | None = None,
    target_std: np.ndarray | None = None,
) -> np.ndarray:
    """The trained head applied to the activations of ``features`` only (all others zeroed).

    Args:
        activations: (N, d) post-TopK activations (the head's input; 0 = inactive).
        weight: (T, d) head weight; bias: (T,) head bias (the network's standardized outputs).
        features: the feature indices kept.
        target_mean, target_std: (T,) to turn standardized outputs into physical units
            (physical = mean + std * output); omitted = outputs as they are.

    Returns:
        (N, T) float64 predictions.
    """
    a = np.asarray(activations, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    if a.ndim != 2 or w.ndim != 2 or w.shape[1] != a.shape[1]:
        raise DataError(f"masked head: activations {a.shape} and weight {w.shape} do not match")
    keep = np.zeros(a.shape[1], dtype=bool)
    keep[np.asarray(list(features), dtype=np.intp)] = True
    out = (a * keep) @ w.T + np.asarray(bias, dtype=np.float64)
    if target_std is not None:
        out = out * np.asarray(target_std, dtype=np.float64)
    if target_mean is not None:
        out = out + np.asarray(target_mean, dtype=np.float64)
    return out


def masked_head_rmse(predictions: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(T,) RMSE per target of :func:`masked_head_predictions` against (N, T) targets."""
    p = np.asarray(predictions, dtype=np.float64)
    t = np.asarray(y, dtype=np.float64).reshape(p.shape)
    return np.sqrt(((p - t) ** 2).mean(axis=0))


def variance_share(activations: np.ndarray, features: Sequence[int]) -> float:
    """Share of the total activation variance held by ``features`` (0-1).

    sum_{f in features} Var(a_f) / sum_{f=1..d} Var(a_f), variances over the N galaxies
    (population variance; the ratio does not depend on the ddof).

    Args:
        activations: (N, d) activations (0 = inactive).
        features: the chosen feature indices.
    """
    var = np.asarray(activations, dtype=np.float64).var(axis=0)
    total = var.sum()
    if total <= 0:
        raise DataError("variance share: the activations have no variance")
    return float(var[np.asarray(list(features), dtype=np.intp)].sum() / total)


def dense_activations(acts: SparseActivations) -> np.ndarray:
    """(N, d) float64 dense matrix of sparse activations (0 where inactive)."""
    out = np.zeros((acts.n, acts.d), dtype=np.float64)
    vals = np.where(acts.values > 0, acts.values, 0.0).astype(np.float64)
    np.put_along_axis(out, acts.indices.astype(np.intp), vals, axis=1)
    return out


def pre_topk_activations(
    pooled: np.ndarray,
    rows: np.ndarray,
    objid: np.ndarray,
    predictions: np.ndarray | None = None,
    split: str = "val",
    model_sha: str = "",
) -> SparseActivations:
    """The pooled features before TopK as a :class:`SparseActivations` with all d features.

    Every statistic of :mod:`sfnet.analysis.activations` then follows the paper's notebooks: a feature is
    activated where its pooled (post-ReLU) value is non-zero, A_f = value / max.

    Args:
        pooled: (N, d) pooled features after the ReLU (:func:`sfnet.predict.pooled_features`).
        rows, objid: (N,) dataset rows and object IDs of the galaxies.
        predictions: (N, T) the model's predictions (physical units), kept as they are.
    """
    p = np.asarray(pooled, dtype=np.float32)
    if p.ndim != 2:
        raise DataError(f"pre-TopK activations: expected (N, d) pooled features, got {p.shape}")
    n, d = p.shape
    idx = np.broadcast_to(np.arange(d, dtype=np.int32), (n, d))
    return SparseActivations(
        objid=objid,
        rows=rows,
        indices=idx,
        values=np.maximum(p, 0.0),
        d=d,
        split=split,
        predictions=predictions,
        model_sha=model_sha,
    )


def agn_classes(catalog: pd.DataFrame) -> tuple[np.ndarray, str]:
    """MPA-JHU ``bptclass`` of each catalog row, and where it came from.

    Uses the ``bptclass`` column when present; otherwise derives it from the four line fluxes
    and errors (:func:`sfnet.physics.bpt_class`: Kauffmann 2003 and Kewley 2001 lines, S/N > 3).

    Raises:
        DataError: neither ``bptclass`` nor the line fluxes and errors are in the catalog.
    """
    if "bptclass" in catalog.columns:
        cls = pd.to_numeric(catalog["bptclass"], errors="coerce").fillna(-1).astype(np.int64)
        return cls.to_numpy(), "the catalog's bptclass column (MPA-JHU)"
    cols = [c for line in BPT_LINES for c in (line, line + "_err")]
    missing = [c for c in cols if c not in catalog.columns]
    if missing:
        raise DataError(
            f"AGN labels: the catalog has no 'bptclass' column and lacks {', '.join(missing)}"
        )
    f = catalog[list(BPT_LINES)].to_numpy(dtype=np.float64)
    e = catalog[[line + "_err" for line in BPT_LINES]].to_numpy(dtype=np.float64)
    return bpt_class(f, e), (
        "derived from the four line fluxes (no bptclass column): Kauffmann 2003 / Kewley 2001 "
        "lines, S/N > 3, composites between them"
    )


def paper_agn_labels(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is_agn, used): AGN = bptclass 4 or 5, star-forming = 1 or 2; ``used`` False elsewhere.

    Composites (3) and unclassifiable galaxies are left out of training and scoring.
    """
    c = np.asarray(classes)
    agn = np.isin(c, AGN_CLASSES)
    return agn, agn | np.isin(c, SF_CLASSES)


@dataclass
class AGNScore:
    """Validation scores of the paper's AGN classifier.

    Attributes:
        features: feature indices used. accuracy, f1: on the validation galaxies used (F1 of
        the AGN class). n_train, n_val: galaxies used. agn_fraction_val: AGN share among them.
    """

    features: list[int]
    accuracy: float
    f1: float
    n_train: int
    n_val: int
    agn_fraction_val: float


def paper_agn_svm(
    train_X: np.ndarray,
    train_classes: np.ndarray,
    val_X: np.ndarray,
    val_classes: np.ndarray,
    features: Sequence[int],
    seed: int = 0,
) -> AGNScore:
    """LinearSVC on the activations of ``features`` (bptclass labels, composites excluded).

    Args:
        train_X, val_X: (N, d) activations of the training / validation galaxies.
        train_classes, val_classes: (N,) bptclass codes.
        features: the columns used.
    """
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    cols = np.asarray(list(features), dtype=np.intp)
    if len(cols) == 0:
        raise DataError("AGN classifier: no input features")
    ytr, use_tr = paper_agn_labels(train_classes)
    yva, use_va = paper_agn_labels(val_classes)
    n_agn = int(ytr[use_tr].sum())
    if n_agn == 0 or n_agn == int(use_tr.sum()):
        raise DataError(
            f"AGN classifier: the training split has {n_agn} AGN among {int(use_tr.sum())} "
            "classified galaxies; both classes are needed"
        )
    if not use_va.any():
        raise DataError("AGN classifier: no star-forming or AGN galaxy in the validation split")
    clf = LinearSVC(random_state=seed, max_iter=20000)
    clf.fit(np.asarray(train_X, dtype=np.float64)[use_tr][:, cols], ytr[use_tr])
    pred = clf.predict(np.asarray(val_X, dtype=np.float64)[use_va][:, cols])
    return AGNScore(
        features=[int(c) for c in cols],
        accuracy=float(accuracy_score(yva[use_va], pred)),
        f1=float(f1_score(yva[use_va], pred, zero_division=0.0)),
        n_train=int(use_tr.sum()),
        n_val=int(use_va.sum()),
        agn_fraction_val=float(yva[use_va].mean()),
    )


__all__ = [
    "AGNScore",
    "AGN_CLASSES",
    "SF_CLASSES",
    "STATS_CHOICES",
    "agn_classes",
    "dense_activations",
    "masked_head_predictions",
    "masked_head_rmse",
    "paper_agn_labels",
    "paper_agn_svm",
    "pre_topk_activations",
    "variance_share",
]
