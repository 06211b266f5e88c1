"""Sparse feature activations of a trained SFNet and their statistics.

An SFNet keeps k of its d pooled features (512 for resnet18) per galaxy, so the activations of
N galaxies are stored sparse: (N, k) feature indices and (N, k) values (memory O(N k), never
O(N d)). A feature is *active* for a galaxy only where its value is > 0 (TopK can keep zeros
when fewer than k features are positive).

Definitions (as in the paper):

- f_activated(f): share of the stored galaxies where feature f is active.
- A_f = a_f / max over the stored galaxies of a_f: the activation strength scaled to [0, 1].
- Features are ranked by f_activated (ties by index) and labelled ``SL17`` (a ``bpt_lines`` run)
  or ``Z61`` (a ``metallicity`` run), the number being the feature index 0..d-1.

The pure functions take arrays; :func:`compute_activations` and the ``save``/``load`` methods
touch a run folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfnet.config import INFERENCE_BATCH
from sfnet.errors import DataError, RunFolderError

#: File name of the stored activations inside a run folder.

#: Label prefixes of features per target group (the paper's SL17 / Z61).
LABEL_PREFIX = {"bpt_lines": "SL", "metallicity": "Z"}

#: Catalog columns never used to interpret features (identifiers and positions).
_SKIP_COLUMNS = {"objID", "objid", "ra", "dec", "specObjID", "plate", "mjd", "fiberID"}


@dataclass
class SparseActivations:
    """Top-k activations of N galaxies.

    Attributes:
        objid: (N,) object IDs (int64 or str).
        rows: (N,) int64 row of each galaxy in the run's dataset (catalog order).
        indices: (N, k) int16 feature indices in 0..d-1.
        values: (N, k) float32 activations (post-ReLU; 0 means "not active").
        d: number of features the indices refer to (the run's ``meta.d``, i.e.
            ``sfnet.model.BACKBONE_DIMS`` of its backbone).
        split: which galaxies: ``val`` (the validation split) or ``all``.
        predictions: (N, T) float32 model predictions in physical units, or None.
        model_sha: hash of the model weights the activations came from ("" if unknown).
    """

    objid: np.ndarray
    rows: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    d: int
    split: str = "val"
    predictions: np.ndarray | None = None
    model_sha: str = ""

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices)
        self.values = np.asarray(self.values, dtype=np.float32)
        self.rows = np.asarray(self.rows, dtype=np.int64)
        self.objid = np.asarray(self.objid)
        if self.indices.ndim != 2 or self.indices.shape != self.values.shape:
            raise DataError(
                f"activations: indices {self.indices.shape} and values {self.values.shape} "
                "must both be (N, k)"
            )
        n = len(self.indices)
        if len(self.objid) != n or len(self.rows) != n:
            raise DataError(
                f"activations: objid ({len(self.objid)}), rows ({len(self.rows)}) and "
                f"indices ({n}) differ in length"
            )
        if n and (self.indices.min() < 0 or self.indices.max() >= self.d):
            raise DataError(f"activations: feature indices must lie in 0..{self.d - 1}")
        dtype = np.int16 if self.d <= np.iinfo(np.int16).max else np.int32
        self.indices = self.indices.astype(dtype, copy=False)
        if self.predictions is not None:
            self.predictions = np.asarray(self.predictions, dtype=np.float32)
            if len(self.predictions) != n:
                raise DataError(
                    f"activations: predictions ({len(self.predictions)}) and indices ({n}) "
                    "differ in length"
                )

    @property
    def n(self) -> int:
        """Number of galaxies N."""
        return len(self.indices)

    @property
    def k(self) -> int:
        """Kept features per galaxy."""
        return self.indices.shape[1]

    def subset(self, positions: np.ndarray) -> SparseActivations:
        """The activations of the galaxies at ``positions`` (0..N-1) of this set, in that order."""
        pos = np.asarray(positions, dtype=np.intp)
        return dataclasses.replace(
            self,
            objid=self.objid[pos],
            rows=self.rows[pos],
            indices=self.indices[pos],
            values=self.values[pos],
            predictions=None if self.predictions is None else self.predictions[pos],
        )

    def save(self, path: Path) -> None:
        """Write as an uncompressed ``.npz`` (atomically; no pickles: string objIDs are stored
        as a fixed-width unicode array)."""
        from sfnet.data.dataset import ids_without_pickle
        from sfnet.io import atomic_write

        arrays: dict[str, np.ndarray] = {
            "objid": ids_without_pickle(self.objid),
            "rows": self.rows,
            "indices": self.indices,
            "values": self.values,
            "d": np.asarray(self.d),
            "split": np.asarray(self.split),
            "model_sha": np.asarray(self.model_sha),
        }
        if self.predictions is not None:
            arrays["predictions"] = self.predictions

        def _write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(Path(path), _write)

    @classmethod
    def load(cls, path: Path) -> SparseActivations:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise RunFolderError(f"{path}: no stored activations (run 'sfnet analyze' first)")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = {"objid", "rows", "indices", "values", "d"} - set(z.files)
                if missing:
                    raise RunFolderError(f"{path}: missing arrays {sorted(missing)}")
                return cls(
                    objid=z["objid"],
                    rows=z["rows"],
                    indices=z["indices"],
                    values=z["values"],
                    d=int(z["d"]),
                    split=str(z["split"]) if "split" in z.files else "val",
                    predictions=z["predictions"] if "predictions" in z.files else None,
                    model_sha=str(z["model_sha"]) if "model_sha" in z.files else "",
                )
        except (OSError, ValueError) as e:
            raise RunFolderError(f"{path}: cannot read stored activations ({e})") from None


# ----------------------------------------------------------------------------- statistics


def _active(acts: SparseActivations) -> tuple[np.ndarray, np.ndarray]:
    """Flat (feature index, value) of the active entries (value > 0)."""
    mask = acts.values > 0
    return acts.indices[mask].astype(np.intp), acts.values[mask].astype(np.float64)


def activation_counts(acts: SparseActivations) -> np.ndarray:
    """(d,) int64 number of galaxies where each feature is active (value > 0)."""
    idx, _ = _active(acts)
    return np.bincount(idx, minlength=acts.d).astype(np.int64)


def activation_frequency(acts: SparseActivations) -> np.ndarray:
    """(d,) f_activated: share of galaxies where each feature is active, in [0, 1]."""
    if acts.n == 0:
        raise DataError("activations: no galaxies")
    return activation_counts(acts) / acts.n


def feature_max(acts: SparseActivations) -> np.ndarray:
    """(d,) float64 maximum activation of each feature over the galaxies (0 if never active)."""
    idx, val = _active(acts)
    out = np.zeros(acts.d, dtype=np.float64)
    np.maximum.at(out, idx, val)
    return out


def active_strengths(acts: SparseActivations, feature: int, fmax: float) -> np.ndarray:
    """(n_f,) A_f = a_f / fmax of the galaxies where ``feature`` is active (for histograms)."""
    vals = acts.values[(acts.indices == feature) & (acts.values > 0)].astype(np.float64)
    return vals / fmax if fmax > 0 else vals


@dataclass
class FeatureStats:
    """Per-feature statistics, each (d,).

    Attributes:
        count: galaxies where the feature is active.
        frequency: f_activated = count / N.
        mean_active: mean activation over the galaxies where it is active (NaN if never).
        mean: mean activation over all N galaxies (zeros included).
        max: maximum activation (0 if never active); the A_f scale.
        mean_strength: mean of A_f over all N galaxies (zeros included), in [0, 1].
    """

    count: np.ndarray
    frequency: np.ndarray
    mean_active: np.ndarray
    mean: np.ndarray
    max: np.ndarray
    mean_strength: np.ndarray


def feature_stats(acts: SparseActivations) -> FeatureStats:
    """Counts, frequencies, mean/max activation and mean A_f of every feature (vectorised)."""
    if acts.n == 0:
        raise DataError("activations: no galaxies")
    idx, val = _active(acts)
    count = np.bincount(idx, minlength=acts.d).astype(np.int64)
    total = np.bincount(idx, weights=val, minlength=acts.d)
    fmax = feature_max(acts)  # the one maximum explain, equations and the atlas scale A_f by
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_active = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        mean_strength = np.where(fmax > 0, total / acts.n / np.where(fmax > 0, fmax, 1.0), 0.0)
    return FeatureStats(
        count=count,
        frequency=count / acts.n,
        mean_active=mean_active,
        mean=total / acts.n,
        max=fmax,
        mean_strength=mean_strength,
    )


def rank_features(
    frequency: np.ndarray, n: int | None = None, tie_break: np.ndarray | None = None
) -> np.ndarray:
    """Feature indices by descending f_activated, ties by descending ``tie_break`` (if given),
    then by index; never-active features dropped.

    Pre-TopK frequencies often tie (every pooled feature of a young network is non-zero:
    f_activated = 1 for all 512); the post-TopK frequency as ``tie_break`` then decides which
    of them the model actually uses.

    Args:
        frequency: (d,) f_activated.
        n: keep at most this many (None: all active features).
        tie_break: (d,) secondary key (optional).
    """
    f = np.asarray(frequency, dtype=np.float64)
    t = np.zeros_like(f) if tie_break is None else np.asarray(tie_break, dtype=np.float64)
    order = np.lexsort((np.arange(len(f)), -t, -f))
    order = order[f[order] > 0]
    return order if n is None else order[:n]


def feature_label(target: str, feature: int) -> str:
    """The paper's label of a feature: ``SL17`` (bpt_lines), ``Z61`` (metallicity, also with
    extra cuts such as ``metallicity; z < 0.1``), else ``F5`` (catalog-column targets).

    This is the one label function: prediction tables, atlas and ``explain`` call it."""
    from sfnet.data.catalog import parse_target
    from sfnet.errors import DataError

    try:
        preset = parse_target(target).preset or target
    except DataError:
        preset = target
    return f"{LABEL_PREFIX.get(preset, 'F')}{int(feature)}"


def dense_columns(acts: SparseActivations, features: Sequence[int]) -> np.ndarray:
    """(N, m) float64 raw activations of the given features (0 where not active)."""
    out = np.zeros((acts.n, len(features)), dtype=np.float64)
    vals = np.where(acts.values > 0, acts.values, 0.0)
    for j, f in enumerate(features):
        out[:, j] = (vals * (acts.indices == f)).sum(axis=1)
    return out


def scaled_strength(
    acts: SparseActivations, features: Sequence[int], fmax: np.ndarray | None = None
) -> np.ndarray:
    """(N, m) A_f = a_f / max_f(a_f) in [0, 1] for the given features.

    Args:
        acts: the activations.
        features: m feature indices.
        fmax: (d,) the scales; default :func:`feature_max` of ``acts`` (the same galaxies).
    """
    fmax = feature_max(acts) if fmax is None else np.asarray(fmax, dtype=np.float64)
    scale = fmax[np.asarray(features, dtype=np.intp)]
    cols = dense_columns(acts, features)
    return np.divide(cols, scale, out=np.zeros_like(cols), where=scale > 0)


def top_activating(
    acts: SparseActivations, feature: int, n: int = 9
) -> tuple[np.ndarray, np.ndarray]:
    """The n galaxies where ``feature`` is strongest.

    Returns:
        (positions into ``acts`` (m,), raw activations (m,)), strongest first; m <= n (only
        galaxies where the feature is active).
    """
    col = dense_columns(acts, [feature])[:, 0]
    active = np.flatnonzero(col > 0)
    if len(active) > n:
        part = np.argpartition(-col[active], n - 1)[:n]
        active = active[part]
    order = active[np.lexsort((active, -col[active]))]
    return order, col[order]


# ------------------------------------------------------------------ variance explained


@dataclass
class VarianceExplained:
    """A linear head refitted on only the m most frequent features, for m = 1..M.

    Attributes:
        m: (M,) number of features used.
        features: the ranked feature indices (the first m of them are used in row m-1).
        r2_prediction: (M, T) share of the variance of the model's own predictions explained.
        r2_target: (M, T) share of the target variance explained, or None without targets.
        rmse: (M, T) RMSE of the refitted head against the targets (physical units), or None.
        model_rmse: (T,) RMSE of the full model on the same galaxies, or None.
    """

    m: np.ndarray
    features: np.ndarray
    r2_prediction: np.ndarray
    r2_target: np.ndarray | None
    rmse: np.ndarray | None
    model_rmse: np.ndarray | None

    def to_records(self, target_names: Sequence[str], labels: Sequence[str]) -> list[dict]:
        """One JSON-ready dict per m (mean over targets plus per-target values)."""
        out = []
        for i, m in enumerate(self.m):
            rec: dict[str, Any] = {
                "m": int(m),
                "features": [str(s) for s in labels[: int(m)]],
                "r2_prediction_mean": float(np.mean(self.r2_prediction[i])),
                "r2_prediction": _named(target_names, self.r2_prediction[i]),
            }
            if self.r2_target is not None and self.rmse is not None:
                rec["r2_target_mean"] = float(np.mean(self.r2_target[i]))
                rec["r2_target"] = _named(target_names, self.r2_target[i])
                rec["rmse"] = _named(target_names, self.rmse[i])
            out.append(rec)
        return out


def _named(names: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {str(n): float(v) for n, v in zip(names, values, strict=True)}


def _r2(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    ss_res = ((y - pred) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)


def variance_explained(
    columns: np.ndarray,
    predictions: np.ndarray,
    y: np.ndarray | None = None,
    features: np.ndarray | None = None,
) -> VarianceExplained:
    """Refit a linear head (with intercept) on the first m columns, m = 1..M.

    The head is fitted by least squares on the same galaxies it is scored on (at most M + 1
    parameters per target, so with thousands of galaxies the optimism is negligible).

    Args:
        columns: (N, M) activations of the ranked features (most frequent first); raw or scaled,
            a linear fit does not care.
        predictions: (N, T) the model's predictions (physical units).
        y: (N, T) the targets (physical units), optional.
        features: (M,) the feature indices of the columns, recorded in the result.
    """
    from sklearn.linear_model import LinearRegression

    from sfnet.analysis.metrics import rmse

    x = np.asarray(columns, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64).reshape(len(x), -1)
    t = None if y is None else np.asarray(y, dtype=np.float64).reshape(len(x), -1)
    n_cols = x.shape[1]
    r2p = np.zeros((n_cols, p.shape[1]))
    r2t = None if t is None else np.zeros((n_cols, t.shape[1]))
    rmse_m = None if t is None else np.zeros((n_cols, t.shape[1]))
    for i in range(n_cols):
        xi = x[:, : i + 1]
        r2p[i] = _r2(LinearRegression().fit(xi, p).predict(xi), p)
        if t is not None:
            fit = LinearRegression().fit(xi, t).predict(xi)
            r2t[i] = _r2(fit, t)
            rmse_m[i] = rmse(fit, t)
    model_rmse = None if t is None else rmse(p, t)
    return VarianceExplained(
        m=np.arange(1, n_cols + 1),
        features=np.arange(n_cols) if features is None else np.asarray(features),
        r2_prediction=r2p,
        r2_target=r2t,
        rmse=rmse_m,
        model_rmse=model_rmse,
    )


# ------------------------------------------------------------------ correlations


def rank_columns(x: np.ndarray) -> np.ndarray:
    """(N, p) average ranks of each column (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(x, dtype=np.float64), axis=0, method="average")


def spearman_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(p, q) Spearman rho between the columns of x (N, p) and y (N, q).

    All values must be finite. A constant column has rho 0 with everything.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    if len(x) != len(y):
        raise ValueError(f"spearman_matrix: {len(x)} rows in x but {len(y)} in y")
    if len(x) < 2:
        return np.zeros((x.shape[1], y.shape[1]))
    return _pearson_standardized(_standardize(rank_columns(x)), _standardize(rank_columns(y)))


def _standardize(r: np.ndarray) -> np.ndarray:
    r = r - r.mean(axis=0)
    norm = np.sqrt((r**2).sum(axis=0))
    return np.divide(r, norm, out=np.zeros_like(r), where=norm > 0)


def _pearson_standardized(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(a.T @ b, -1.0, 1.0)


def interpretable_columns(catalog: pd.DataFrame) -> list[str]:
    """Numeric catalog columns worth correlating with features.

    Drops identifiers and positions (objID, ra, dec, ...), ``*_err`` columns and constant or
    non-numeric columns; keeps the targets, the physical properties and the ``true_*`` factors.
    """
    out = []
    for c in catalog.columns:
        name = str(c)
        if name in _SKIP_COLUMNS or name.endswith("_err"):
            continue
        s = catalog[c]
        if s.dtype == bool:
            out.append(name)
            continue
        if not pd.api.types.is_numeric_dtype(s):
            continue
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        fin = v[np.isfinite(v)]
        if len(fin) > 1 and fin.min() != fin.max():
            out.append(name)
    return out


def spearman_with_catalog(
    x: np.ndarray, catalog: pd.DataFrame, columns: Sequence[str]
) -> np.ndarray:
    """(p, q) Spearman rho of x (N, p) with catalog columns (N rows, aligned with x).

    Columns without missing values are handled in one vectorised pass; a column with NaN/inf
    entries is correlated on its finite rows only.
    """
    x = np.asarray(x, dtype=np.float64)
    if len(catalog) != len(x):
        raise ValueError(f"spearman_with_catalog: {len(x)} rows but catalog has {len(catalog)}")
    out = np.zeros((x.shape[1], len(columns)))
    if not columns:
        return out
    vals = np.column_stack(
        [catalog[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in columns]
    )
    finite = np.isfinite(vals)
    full = finite.all(axis=0)
    if full.any():
        out[:, full] = spearman_matrix(x, vals[:, full])
    for j in np.flatnonzero(~full):
        keep = finite[:, j]
        if keep.sum() > 2:
            out[:, j] = spearman_matrix(x[keep], vals[keep, j])[:, 0]
    return out


def top_correlations(
    rho: np.ndarray, names: Sequence[str], n: int = 3
) -> list[list[tuple[str, float]]]:
    """For each row of rho (p, q): the n (name, rho) pairs with the largest |rho|."""
    out = []
    for row in np.atleast_2d(rho):
        order = np.lexsort((np.arange(len(row)), -np.abs(row)))[:n]
        out.append([(str(names[j]), float(row[j])) for j in order])
    return out


def format_correlations(pairs: Sequence[tuple[str, float]]) -> str:
    """``'lgm_tot_p50 (+0.71); z (-0.20)'``."""
    return "; ".join(f"{name} ({r:+.2f})" for name, r in pairs)


def feature_table(
    acts: SparseActivations,
    features: Sequence[int],
    target: str,
    catalog: pd.DataFrame | None = None,
    n_correlations: int = 3,
    stats: FeatureStats | None = None,
) -> pd.DataFrame:
    """The paper's Table 1 with a data-driven interpretation column.

    Args:
        acts: the activations.
        features: the features to list, in order (usually the most frequent).
        target: the run's target group (labels SL*/Z*).
        catalog: catalog rows aligned with ``acts`` (row i = galaxy i of ``acts``), optional.
        n_correlations: how many correlated columns to list per feature.
        stats: precomputed :func:`feature_stats` of ``acts``.

    Returns:
        One row per feature: feature, label, f_activated, mean_activation (over active
        galaxies), max_activation, mean_strength, and when a catalog is given ``correlates``
        (catalog columns) and ``true_correlates`` (``true_*`` factors, synthetic data only),
        each as ``'name (+rho); ...'`` with Spearman rho against A_f.
    """
    stats = feature_stats(acts) if stats is None else stats
    feats = np.asarray(features, dtype=np.intp)
    table = pd.DataFrame(
        {
            "feature": feats,
            "label": [feature_label(target, f) for f in feats],
            "f_activated": stats.frequency[feats],
            "mean_activation": stats.mean_active[feats],
            "max_activation": stats.max[feats],
            "mean_strength": stats.mean_strength[feats],
        }
    )
    if catalog is not None and len(feats):
        strengths = scaled_strength(acts, feats, stats.max)
        cols = interpretable_columns(catalog)
        plain = [c for c in cols if not c.startswith("true_")]
        true = [c for c in cols if c.startswith("true_")]
        rho = spearman_with_catalog(strengths, catalog.reset_index(drop=True), plain + true)
        table["correlates"] = [
            format_correlations(p)
            for p in top_correlations(rho[:, : len(plain)], plain, n_correlations)
        ]
        if true:
            table["true_correlates"] = [
                format_correlations(p)
                for p in top_correlations(rho[:, len(plain) :], true, n_correlations)
            ]
    return table


def correlation_matrix(acts: SparseActivations, features: Sequence[int]) -> np.ndarray:
    """(m, m) Pearson correlation of the features' activations over the galaxies.

    A feature that is constant on these galaxies correlates 0 with the others (1 with itself).
    """
    cols = _standardize(dense_columns(acts, features))
    corr = np.clip(cols.T @ cols, -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return corr


# ------------------------------------------------------------------ computing from a run


def model_sha(run_dir: Path) -> str:
    """Short SHA-256 of the run's ``model.safetensors`` ("" if absent)."""
    import hashlib

    from sfnet.runs import WEIGHTS

    path = Path(run_dir) / WEIGHTS
    if not path.is_file():
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def compute_activations(
    run: Any,
    data: Any = None,
    *,
    split: str = "val",
    batch_size: int = INFERENCE_BATCH,
    progress: bool = False,
) -> SparseActivations:
    """Top-k activations (and predictions) of a sparse run on its validation split or all galaxies.

    Args:
        run: a loaded run (:func:`sfnet.runs.load_run`).
        data: the run's :class:`~sfnet.data.dataset.GalaxyData` (loaded from the run if None).
        split: ``val`` (the run's own validation split) or ``all``.
        batch_size: galaxies per forward pass.
        progress: show a progress bar (galaxies).

    Raises:
        RunFolderError: for a dense run (no top-k) or an unknown split.
    """
    from sfnet.predict import predict
    from sfnet.progress import progress_bar

    if getattr(run.meta, "k", None) is None:
        raise RunFolderError(f"{run.dir}: a dense run has no sparse activations")
    if split not in ("val", "all"):
        raise RunFolderError(f"split must be 'val' or 'all', got {split!r}")
    data = run.data() if data is None else data
    n = len(data.images)
    rows = run.split(n)[1] if split == "val" else np.arange(n, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    chunk = max(batch_size * 8, 1)
    idx_parts, val_parts, pred_parts = [], [], []
    d = int(run.meta.d)
    idx_dtype = np.int16 if d <= np.iinfo(np.int16).max else np.int32
    with progress_bar(progress, len(rows), "activations", unit="gal") as bar:
        for start in range(0, len(rows), chunk):
            sel = rows[start : start + chunk]
            out = predict(run, data.images, sel, batch_size=batch_size)
            if out.indices is None or out.values is None:
                raise RunFolderError(f"{run.dir}: the model returned no top-k activations")
            idx_parts.append(np.asarray(out.indices).astype(idx_dtype))
            val_parts.append(np.asarray(out.values, dtype=np.float32))
            pred_parts.append(np.asarray(out.predictions, dtype=np.float32))
            bar.update(len(sel))
    if not idx_parts:
        raise DataError(f"{run.dir}: no galaxies in the {split} split")
    return SparseActivations(
        objid=np.asarray(data.objid)[rows],
        rows=rows,
        indices=np.concatenate(idx_parts),
        values=np.concatenate(val_parts),
        d=d,
        split=split,
        predictions=np.concatenate(pred_parts),
        model_sha=model_sha(run.dir),
    )
