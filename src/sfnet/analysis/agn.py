"""AGN classification from SFNet features (the paper's "Performance versus interpretability").

Labels come from the *measured* line fluxes: AGN = above the Kauffmann et al. (2003) line or
right of its asymptote (:func:`sfnet.physics.kauffmann_agn`). A linear SVM (scikit-learn
``LinearSVC`` on standardized inputs) is fitted on the training split from (a) the few most
frequently active SFNet features and (b) every feature that is ever active, and scored on the
validation split (accuracy and F1 of the AGN class).

The paper's own definition (MPA-JHU ``bptclass`` labels with composites excluded, unscaled
``LinearSVC``) is :func:`sfnet.analysis.paper.paper_agn_svm`, used by ``sfnet reproduce``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from sfnet.analysis.activations import rank_features
from sfnet.errors import DataError
from sfnet.physics import bpt_ratios, kauffmann_agn


def agn_labels(log_fluxes: np.ndarray) -> np.ndarray:
    """AGN flags from (N, 4) log10 line fluxes in the order of :data:`sfnet.physics.BPT_LINES`.

    Returns:
        (N,) bool, True above the Kauffmann et al. (2003) line (composites count as AGN).
    """
    x, y = bpt_ratios(log_fluxes)
    return kauffmann_agn(x, y)


@dataclass
class SVMResult:
    """Validation scores of a linear SVM AGN classifier.

    Attributes:
        features: the feature indices used as inputs.
        accuracy: validation accuracy (0-1).
        f1: validation F1 score of the AGN class (0-1).
        agn_fraction_val: share of AGN among validation galaxies.
    """

    features: list[int]
    accuracy: float
    f1: float
    agn_fraction_val: float


def agn_svm(
    train_X: np.ndarray,
    train_labels: np.ndarray,
    val_X: np.ndarray,
    val_labels: np.ndarray,
    features: np.ndarray | None = None,
    seed: int = 0,
    C: float = 1.0,
) -> SVMResult:
    """Fit a standardized linear SVM on training rows and score it on validation rows.

    Args:
        train_X: (N_train, D) inputs (e.g. dense SFNet activations).
        train_labels: (N_train,) bool, True = AGN.
        val_X: (N_val, D) inputs.
        val_labels: (N_val,) bool.
        features: columns of X to use; all columns when None.
        seed: seed of the SVM's coordinate descent.
        C: inverse regularisation strength.
    """
    train_X = np.asarray(train_X, dtype=np.float64)
    val_X = np.asarray(val_X, dtype=np.float64)
    ytr = np.asarray(train_labels, dtype=bool)
    yva = np.asarray(val_labels, dtype=bool)
    if len(train_X) != len(ytr) or len(val_X) != len(yva):
        raise DataError("agn svm: inputs and labels differ in length")
    cols = np.arange(train_X.shape[1]) if features is None else np.asarray(features, dtype=np.int64)
    if len(cols) == 0:
        raise DataError("agn svm: no input features (no SFNet feature is ever active)")
    n_agn = int(ytr.sum())
    if n_agn == 0 or n_agn == len(ytr):
        raise DataError(
            f"agn svm: the training split has {n_agn} AGN of {len(ytr)} galaxies; "
            "both classes are needed"
        )
    clf = make_pipeline(StandardScaler(), LinearSVC(C=C, random_state=seed, max_iter=20000))
    clf.fit(train_X[:, cols], ytr)
    pred = clf.predict(val_X[:, cols])
    return SVMResult(
        features=[int(c) for c in cols],
        accuracy=float(accuracy_score(yva, pred)),
        f1=float(f1_score(yva, pred, zero_division=0.0)),
        agn_fraction_val=float(yva.mean()) if len(yva) else float("nan"),
    )


def agn_comparison(
    train_acts: np.ndarray,
    train_labels: np.ndarray,
    val_acts: np.ndarray,
    val_labels: np.ndarray,
    n_top: int = 4,
    seed: int = 0,
) -> dict[str, SVMResult]:
    """Linear-SVM AGN classification from the top features vs all active features.

    Feature frequencies are measured on the training split (no validation leakage).

    Args:
        train_acts: (N_train, d) dense SFNet activations (0 = inactive).
        train_labels, val_labels: AGN flags.
        val_acts: (N_val, d) dense activations.
        n_top: how many of the most frequent features make the small set (paper: 4).

    Returns:
        ``{"top": ..., "all_active": ...}`` :class:`SVMResult`.
    """
    freq = (np.asarray(train_acts) > 0).mean(axis=0)
    top = rank_features(freq, n_top)
    active = rank_features(freq)
    return {
        "top": agn_svm(train_acts, train_labels, val_acts, val_labels, top, seed=seed),
        "all_active": agn_svm(train_acts, train_labels, val_acts, val_labels, active, seed=seed),
    }
