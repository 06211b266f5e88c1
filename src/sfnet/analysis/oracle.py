"""The oracle: how well the true latent factors alone predict each target.

On the synthetic survey every galaxy carries its ground-truth factors as ``true_*`` columns.
A gradient-boosting regressor fitted on the factors an image can show (all ``true_*`` columns
except :data:`sfnet.data.synthetic.HIDDEN_TRUE_COLUMNS`) and scored on a held-out split gives
the RMSE a perfect reader of those factors would reach: a practical bound for any image
model. The predict-the-mean RMSE on the same split is the other end of the scale.

The split is ``sfnet.data.batches.split_indices`` over the rows kept by the training cuts
(``sfnet.data.catalog.select_target``), so with the same ``seed`` and ``val_fraction`` the
oracle is scored on the same validation galaxies as a training run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sfnet.analysis.metrics import rmse
from sfnet.errors import DataError


@dataclass
class OracleResult:
    """Held-out RMSEs in physical units (dex for ``oh_p50`` and the log line fluxes).

    Attributes:
        oracle: target name -> RMSE of gradient boosting on the true factors.
        mean: target name -> RMSE of predicting the training-split mean.
        factors: the ``true_*`` columns used.
        n_train, n_val: galaxies in each split (after the target's quality cuts).
    """

    oracle: dict[str, float]
    mean: dict[str, float]
    factors: list[str]
    n_train: int
    n_val: int


def oracle_scores(
    catalog: pd.DataFrame, target: str, seed: int = 0, val_fraction: float = 0.2
) -> OracleResult:
    """Fit the oracle and the mean predictor for a target group and score them held-out.

    Args:
        catalog: catalog with ``true_*`` columns (e.g. a synthetic survey's ``galaxies.csv``).
        target: ``metallicity`` or ``bpt_lines``.
        seed: seed of the train/validation split (and of the regressor).
        val_fraction: share of the kept galaxies held out.

    Raises:
        DataError: no ``true_*`` columns, or too few galaxies after the cuts.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    from sfnet.data.batches import split_indices
    from sfnet.data.catalog import select_target, target_columns
    from sfnet.data.synthetic import HIDDEN_TRUE_COLUMNS

    sel = select_target(catalog, target)
    own = set(target_columns(target))  # a true_* target is not its own oracle
    factors = [
        c
        for c in sel.catalog.columns
        if c.startswith("true_") and c not in HIDDEN_TRUE_COLUMNS and c not in own
    ]
    if not factors:
        raise DataError(
            "catalog has no true_* columns: the oracle needs ground-truth factors "
            "(a synthetic survey from 'sfnet synth')"
        )
    if len(sel.y) < 10:
        raise DataError(f"only {len(sel.y)} galaxies pass the {target} cuts; the oracle needs 10+")
    x = sel.catalog[factors].to_numpy(dtype=np.float64)
    tr, va = split_indices(len(sel.y), val_fraction, seed)
    oracle, mean = {}, {}
    # One thread: OpenMP spin-waiting on a small shared machine is far slower than serial.
    with threadpool_limits(limits=1):
        for j, name in enumerate(sel.names):
            y = sel.y[:, j].astype(np.float64)
            reg = HistGradientBoostingRegressor(
                max_iter=200, learning_rate=0.05, early_stopping=False, random_state=seed
            )
            reg.fit(x[tr], y[tr])
            oracle[name] = float(rmse(reg.predict(x[va]), y[va])[0])
            mean[name] = float(rmse(np.full(len(va), y[tr].mean()), y[va])[0])
    return OracleResult(oracle, mean, factors, len(tr), len(va))


def oracle_rmse(catalog: pd.DataFrame, target: str, seed: int = 0) -> dict[str, float]:
    """Held-out RMSE (physical units) per target name of gradient boosting on the true factors.

    See :func:`oracle_scores` for the predict-the-mean RMSE on the same split.
    """
    return oracle_scores(catalog, target, seed=seed).oracle
