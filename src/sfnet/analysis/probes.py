"""Probes from another model's features (the paper's Zoobot test, for any feature matrix).

Given a feature matrix F for the same galaxies (a dense CNN's pooled features, or a user's
file keyed by objID):

(a) a linear model (ridge, regularisation chosen by efficient leave-one-out CV) and (b) an
    XGBoost regressor are fitted to the targets on the training split and scored on the
    validation split;
    the same two are fitted on the validation split itself and scored there (the memorisation
    check: how low can the error go when the answers are seen);
(c) a ridge regression from F to each frequently active SFNet feature, R^2 on validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sfnet.analysis.metrics import rmse
from sfnet.errors import DataError

#: Ridge penalties searched by leave-one-out CV (on standardized features).
RIDGE_ALPHAS = np.logspace(-3, 4, 15)


def _ids(objid: np.ndarray) -> pd.Index:
    arr = np.asarray(objid)
    if arr.dtype.kind == "f":
        raise DataError("objID is float; store it as int64 or string (floats lose digits)")
    return pd.Index([str(v).strip() for v in arr.tolist()])


def load_feature_table(path: Path, objid: np.ndarray) -> np.ndarray:
    """Read a feature matrix keyed by objID and align it to ``objid``.

    Accepted files:

    - ``.parquet``: an ``objID`` column plus numeric feature columns;
    - ``.npz``: arrays ``objID`` (N,) and ``features`` (N, F);
    - ``.npy``: a structured array with an ``objID`` field plus numeric fields.

    Args:
        path: the feature file.
        objid: (N,) int64 or str objIDs of the galaxies to align to (extra rows in the file
            are ignored; every requested objID must be present exactly once).

    Returns:
        (N, F) float32 features in the order of ``objid``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such feature file")
    keys, values = _read_feature_file(path)
    return _align_features(path, keys, values, objid)


def _read_parquet_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_parquet(path)
    if "objID" not in df.columns:
        raise DataError(f"{path}: no 'objID' column (has {', '.join(map(str, df.columns[:8]))})")
    feats = df.drop(columns=["objID"])
    nonnum = [c for c in feats.columns if not pd.api.types.is_numeric_dtype(feats[c])]
    if nonnum:
        raise DataError(f"{path}: non-numeric feature column(s) {nonnum[:5]}")
    return df["objID"].to_numpy(), feats.to_numpy(dtype=np.float64)


def _read_npz_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        for key in ("objID", "features"):
            if key not in z.files:
                raise DataError(f"{path}: missing array {key!r} (has {', '.join(z.files)})")
        keys, values = z["objID"], np.asarray(z["features"], dtype=np.float64)
    if values.ndim != 2 or len(values) != len(keys):
        raise DataError(
            f"{path}: 'features' must be (N, F) with N = len(objID) = {len(keys)}, "
            f"got {values.shape}"
        )
    return keys, values


def _read_npy_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arr = np.load(path, allow_pickle=False)
    if arr.dtype.names is None or "objID" not in arr.dtype.names:
        raise DataError(
            f"{path}: a .npy feature file must be a structured array with an 'objID' "
            "field (or use .npz with 'objID' and 'features', or .parquet)"
        )
    names = [n for n in arr.dtype.names if n != "objID"]
    return arr["objID"], np.stack([np.asarray(arr[n], dtype=np.float64) for n in names], axis=1)


_FEATURE_READERS = {
    ".parquet": _read_parquet_features,
    ".npz": _read_npz_features,
    ".npy": _read_npy_features,
}


def _read_feature_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(objID keys (M,), float64 features (M, F)) of a feature file, by its suffix."""
    reader = _FEATURE_READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: expected a .parquet, .npz or .npy feature file")
    try:
        return reader(path)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - unreadable file is a user error
        raise DataError(f"{path}: cannot read feature file ({e})") from None


def _align_features(
    path: Path, keys: np.ndarray, values: np.ndarray, objid: np.ndarray
) -> np.ndarray:
    """The rows of ``values`` for ``objid``, in that order (each objID once, all finite)."""
    try:
        file_ids = _ids(keys)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    dup = file_ids.duplicated()
    if dup.any():
        raise DataError(f"{path}: {int(dup.sum())} duplicated objID(s), e.g. {file_ids[dup][0]}")
    want = _ids(objid)
    pos = file_ids.get_indexer(want)
    missing = pos < 0
    if missing.any():
        raise DataError(
            f"{path}: {int(missing.sum())} of {len(want)} objIDs of the dataset are missing "
            f"from the feature file (e.g. {', '.join(want[missing][:3])})"
        )
    out = values[pos]
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise DataError(
            f"{path}: non-finite feature values for {int(bad.sum())} galaxies "
            f"(e.g. objID {want[bad][0]})"
        )
    return out.astype(np.float32)


def _ridge() -> object:
    return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True))


def _xgb(seed: int, n_jobs: int, n_trees: int) -> object:
    from xgboost import XGBRegressor

    return XGBRegressor(
        n_estimators=n_trees,
        max_depth=6,
        learning_rate=0.1,
        max_bin=32,
        colsample_bytree=0.5,
        tree_method="hist",
        random_state=seed,
        n_jobs=n_jobs,
    )


@dataclass
class ProbeResult:
    """RMSE (physical units) of probes from a feature matrix to the targets.

    Attributes:
        target_names: the T target names.
        rmse: ``{(model, fit_on): (T,) validation RMSE}`` with model in ``linear``/``xgboost``
            and fit_on in ``train`` (generalisation) / ``val`` (memorisation check).
    """

    target_names: list[str]
    rmse: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def probe_targets(
    train_F: np.ndarray,
    y_train: np.ndarray,
    val_F: np.ndarray,
    y_val: np.ndarray,
    target_names: Sequence[str],
    seed: int = 0,
    n_jobs: int = 1,
    models: Sequence[str] = ("linear", "xgboost"),
    n_trees: int = 300,
) -> ProbeResult:
    """Fit linear and XGBoost probes on train (and on val itself); score on validation.

    Args:
        train_F: (N_train, F) features; val_F: (N_val, F).
        y_train: (N_train, T) targets (physical units); y_val: (N_val, T).
        target_names: T names.
        seed: XGBoost seed.
        n_jobs: XGBoost threads (1 is fastest on a shared machine).
        models: which probes to fit.
        n_trees: boosting rounds of each XGBoost model (depth 6, learning rate 0.1).
    """
    ytr = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
    yva = np.asarray(y_val, dtype=np.float64).reshape(len(y_val), -1)
    xtr = np.asarray(train_F, dtype=np.float64)
    xva = np.asarray(val_F, dtype=np.float64)
    if len(xtr) != len(ytr) or len(xva) != len(yva) or xtr.shape[1] != xva.shape[1]:
        raise DataError(
            f"probes: feature/target shapes disagree: train {xtr.shape}/{ytr.shape}, "
            f"val {xva.shape}/{yva.shape}"
        )
    out = ProbeResult(target_names=list(target_names))
    for model in models:
        for fit_on, (fx, fy) in (("train", (xtr, ytr)), ("val", (xva, yva))):
            if model == "linear":
                est = _ridge()
                est.fit(fx, fy)
                pred = est.predict(xva)
            elif model == "xgboost":
                pred = np.empty_like(yva)
                for t in range(fy.shape[1]):
                    est = _xgb(seed, n_jobs, n_trees)
                    est.fit(fx, fy[:, t])
                    pred[:, t] = est.predict(xva)
            else:
                raise ValueError(f"unknown probe model {model!r}")
            out.rmse[(model, fit_on)] = rmse(pred, yva)
    return out


def ridge_r2(
    train_F: np.ndarray,
    train_targets: np.ndarray,
    val_F: np.ndarray,
    val_targets: np.ndarray,
) -> np.ndarray:
    """R^2 on validation of ridge regressions from features to each target column.

    Args:
        train_F: (N_train, F) features; val_F: (N_val, F).
        train_targets: (N_train, M) e.g. SFNet activation strengths A_f of M features.
        val_targets: (N_val, M).

    Returns:
        (M,) validation R^2 (NaN for a column that is constant on validation).
    """
    ttr = np.asarray(train_targets, dtype=np.float64).reshape(len(train_targets), -1)
    tva = np.asarray(val_targets, dtype=np.float64).reshape(len(val_targets), -1)
    est = _ridge()
    est.fit(np.asarray(train_F, dtype=np.float64), ttr)
    pred = np.asarray(est.predict(np.asarray(val_F, dtype=np.float64))).reshape(len(tva), -1)
    out = np.full(ttr.shape[1], np.nan)
    for m in range(ttr.shape[1]):
        if np.ptp(tva[:, m]) > 0:
            out[m] = r2_score(tva[:, m], pred[:, m])
    return out
