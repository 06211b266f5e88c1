"""Galaxy catalogs: read CSV / Parquet / FITS tables with MPA-JHU column names, pick a target
group and apply the paper's quality cuts.

Units: ``oh_p50`` is 12 + log10(O/H) (dex); line fluxes are in 1e-17 erg/s/cm^2 and the
``bpt_lines`` target is their base-10 logarithm. ``objID`` is kept as int64 (or string for
non-numeric IDs), never float: SDSS objIDs have 19 digits and float64 keeps only ~16.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sfnet.errors import DataError
from sfnet.physics import BPT_LINES

#: Catalog file names a dataset folder may hold (exactly one of them).
CATALOG_NAMES = ("galaxies.csv", "galaxies.parquet", "galaxies.fits")

#: Catalog columns read for each target group.
TARGET_COLUMNS: dict[str, tuple[str, ...]] = {
    "metallicity": ("oh_p50",),
    "bpt_lines": BPT_LINES,
}

#: Signal-to-noise threshold of the ``bpt_lines`` cut (every line).
MIN_LINE_SNR = 3.0
#: Upper flux limit of the ``bpt_lines`` cut (1e-17 erg/s/cm^2; larger values are flagged junk).
MAX_LINE_FLUX = 1e5

_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+|nan|inf)$", re.IGNORECASE)


@dataclass
class Cut:
    """One quality cut and its effect.

    Attributes:
        name: the condition rows must satisfy, e.g. ``"oh_p50 > 0"``.
        removed: rows it removed (counted after the earlier cuts).
        skipped: True when the cut could not be applied (its column is absent).
        reason: why it was skipped (empty otherwise).
    """

    name: str
    removed: int = 0
    skipped: bool = False
    reason: str = ""

    def describe(self) -> str:
        """One line for logs: ``"oh_p50 > 0: removed 12"`` or ``"... : skipped (...)"``."""
        if self.skipped:
            return f"{self.name}: skipped ({self.reason})"
        return f"{self.name}: removed {self.removed}"


@dataclass
class TargetSelection:
    """The rows kept for one target group.

    Attributes:
        catalog: kept catalog rows (all columns), index reset to 0..N-1.
        y: (N, T) float32 targets in physical units (see module docstring).
        names: the T target names.
        cuts: the cuts in the order applied, with their counts.
        n_input: rows before any cut.
    """

    catalog: pd.DataFrame
    y: np.ndarray
    names: list[str]
    cuts: list[Cut] = field(default_factory=list)
    n_input: int = 0


def target_names(target: str) -> list[str]:
    """Names of the target columns of a target group.

    ``metallicity`` -> ``["oh_p50"]``; ``bpt_lines`` -> ``["log_nii_6584_flux",
    "log_h_alpha_flux", "log_oiii_5007_flux", "log_h_beta_flux"]`` (order of ``BPT_LINES``).
    """
    if target == "metallicity":
        return list(TARGET_COLUMNS["metallicity"])
    if target == "bpt_lines":
        return [f"log_{c}" for c in TARGET_COLUMNS["bpt_lines"]]
    raise DataError(f"unknown target {target!r}: expected one of {sorted(TARGET_COLUMNS)}")


def find_catalog(folder: Path) -> Path:
    """The catalog file of a dataset folder: ``galaxies.csv``, ``.parquet`` or ``.fits``.

    Raises:
        DataError: if the folder holds none or several of them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a dataset folder")
    found = [folder / n for n in CATALOG_NAMES if (folder / n).is_file()]
    if not found:
        raise DataError(f"{folder}: no catalog found (expected one of {', '.join(CATALOG_NAMES)})")
    if len(found) > 1:
        raise DataError(
            f"{folder}: several catalogs ({', '.join(p.name for p in found)}); keep exactly one"
        )
    return found[0]


def read_catalog(path: Path) -> pd.DataFrame:
    """Read a catalog table (CSV, Parquet or FITS) with an ``objID`` column.

    ``objID`` comes back as int64 when every value is an integer written without leading
    zeros, else as str (``000123`` stays ``"000123"``, matching ``images/000123.png``). A column
    named ``objid`` in any letter case is renamed ``objID``; spaces around header names are
    stripped.

    Raises:
        DataError: unreadable file, missing/float/duplicate/empty objID, or no rows.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such catalog file")
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[Path], pd.DataFrame]] = {
        ".csv": _read_csv,
        ".parquet": _read_parquet,
        ".pq": _read_parquet,
        ".fits": _read_fits,
        ".fit": _read_fits,
    }
    if suffix not in readers:
        raise DataError(f"{path}: unknown catalog format {suffix!r} (use .csv, .parquet or .fits)")
    try:
        df = readers[suffix](path)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad input file
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(f"{path}: cannot read catalog ({type(e).__name__}: {first})") from None
    df = _strip_header(df, path)
    if len(df) == 0:
        raise DataError(f"{path}: catalog has no rows")
    df["objID"] = _objid_column(df["objID"], path)
    check_unique_ids(df["objID"].to_numpy(), path)
    return df.reset_index(drop=True)


def check_unique_ids(objid: np.ndarray, source: str | Path) -> None:
    """Refuse duplicated objIDs (a catalog, a ``.npz`` file or a packed-store index).

    Raises:
        DataError: naming ``source``, the number of duplicated values and the first five.
    """
    col = pd.Series(np.asarray(objid)).astype(str)
    dup = col.duplicated(keep=False)
    if dup.any():
        ids = pd.unique(col[dup])
        raise DataError(
            f"{source}: {len(ids)} duplicated objID value(s), e.g. {', '.join(ids[:5])}"
        )


def _strip_header(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Column names without surrounding spaces (`` objID , oh_p50`` -> ``objID``, ``oh_p50``)."""
    names = [str(c).strip() for c in df.columns]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{path}: duplicated column name(s) {', '.join(map(repr, dup))}")
    df.columns = names
    return df


def _objid_name(columns: list[str], path: Path) -> str:
    matches = [c for c in columns if str(c).strip().lower() == "objid"]
    if not matches:
        raise DataError(f"{path}: missing column 'objID' (columns: {', '.join(map(str, columns))})")
    if len(matches) > 1:
        raise DataError(f"{path}: several objID columns: {', '.join(matches)}")
    return matches[0]


def _read_csv(path: Path) -> pd.DataFrame:
    header = pd.read_csv(path, nrows=0).columns.tolist()
    name = _objid_name(header, path)
    # objID as text first: the default parser would route 19-digit IDs through float.
    df = pd.read_csv(path, dtype={name: str})
    # ... and exactly as written: "nan", "NA" or "null" are IDs here, not missing values
    ids = pd.read_csv(path, usecols=[name], dtype=str, keep_default_na=False)[name]
    df[name] = ids.where(ids.str.strip() != "", None)
    return df.rename(columns={name: "objID"})


def _read_parquet(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    return df.rename(columns={_objid_name(df.columns.tolist(), path): "objID"})


def _read_fits(path: Path) -> pd.DataFrame:
    from astropy.table import Table

    try:
        table = Table.read(path, format="fits")
    except Exception as e:  # noqa: BLE001 - astropy's messages can be long
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: not a readable FITS table ({first})") from None
    multi = [n for n in table.colnames if len(table[n].shape) > 1]
    if multi:
        table.remove_columns(multi)
    df = table.to_pandas()
    for c in df.columns:
        if df[c].dtype == object and len(df) and isinstance(df[c].iloc[0], bytes):
            df[c] = df[c].str.decode("utf-8").str.strip()
    return df.rename(columns={_objid_name(df.columns.tolist(), path): "objID"})


def _objid_column(col: pd.Series, path: Path) -> pd.Series:
    """int64 when all values are integers, str otherwise; float is refused."""
    kind = col.dtype.kind
    if kind == "f":
        raise DataError(
            f"{path}: column 'objID' is floating point; 19-digit IDs lose digits in float64 - "
            "store objID as a 64-bit integer or as text"
        )
    if kind in "iu":
        if kind == "u" and len(col) and int(col.max()) > np.iinfo(np.int64).max:
            return col.astype(str)
        return col.astype(np.int64)
    if kind == "b":
        raise DataError(f"{path}: column 'objID' is boolean")
    text = col.astype("string").str.strip()
    missing = text.isna() | (text == "")
    if missing.any():
        rows = np.flatnonzero(missing.to_numpy())
        raise DataError(f"{path}: column 'objID' is empty in row(s) {rows[:20].tolist()}")
    values = text.to_numpy(dtype=object)
    # only integers written the canonical way become int64: "000123", "+5" and "-0" stay text,
    # so every message (and image file name) shows the objID as the catalog spells it
    if all(_INT_RE.match(v) and str(int(v)) == v for v in values):
        try:
            return pd.Series(np.array([int(v) for v in values], dtype=np.int64), index=col.index)
        except OverflowError:
            return pd.Series(values.astype(str), index=col.index)
    floaty = [v for v in values if _FLOAT_RE.match(v)]
    if floaty:
        raise DataError(
            f"{path}: column 'objID' holds floating-point values (e.g. {floaty[0]!r}); "
            "19-digit IDs lose digits in float - write objID as an integer or as text"
        )
    return pd.Series(values.astype(str), index=col.index)


def select_target(catalog: pd.DataFrame, target: str, source: str = "catalog") -> TargetSelection:
    """Apply the paper's quality cuts for a target group and return the targets.

    ``metallicity``: ``oh_p50`` finite, ``oh_p50 > 0``, ``lgm_tot_p50 > 0``,
    ``sfr_tot_p50 > -10`` (the last two only where the column exists; otherwise the cut is
    reported as skipped). ``bpt_lines``: the four fluxes finite, S/N = flux / err > 3 in all
    four lines (``*_err`` columns, err > 0), every flux < 1e5; target = log10(flux).

    Args:
        catalog: table from :func:`read_catalog`.
        target: ``metallicity`` or ``bpt_lines``.
        source: file name used in error messages.

    Raises:
        DataError: unknown target, a required column missing or not numeric, or no row left.
    """
    names = target_names(target)
    y_all, keep, cuts = quality_flags(catalog, target, source)
    with np.errstate(over="ignore"):
        y = y_all[keep].astype(np.float32)
    big = ~np.isfinite(y).all(axis=1)
    if big.any():  # finite in the catalog, beyond float32 (|x| > 3.4e38) as a target
        row = int(np.flatnonzero(keep)[np.flatnonzero(big)[0]])
        col = names[int(np.flatnonzero(~np.isfinite(y[np.flatnonzero(big)[0]]))[0])]
        raise DataError(
            f"{source}: row {row} (objID {catalog['objID'].iloc[row]}): {col} = "
            f"{y_all[row, names.index(col)]:g} is out of range (|value| must be < 3.4e38); "
            f"{int(big.sum())} row(s) like it - fix or remove them"
        )
    if len(y) == 0:
        summary = "; ".join(c.describe() for c in cuts)
        raise DataError(f"{source}: no galaxy passes the {target} cuts ({summary})")
    kept = catalog.loc[keep].reset_index(drop=True)
    return TargetSelection(catalog=kept, y=y, names=names, cuts=cuts, n_input=len(catalog))


def quality_flags(
    catalog: pd.DataFrame, target: str, source: str = "catalog"
) -> tuple[np.ndarray, np.ndarray, list[Cut]]:
    """The measured targets of every row and whether each row passes the quality cuts.

    Returns:
        (y, passes, cuts): (N, T) float64 measured targets in physical units (NaN where not
        measurable), (N,) bool, and the cuts in the order applied with their counts.

    Raises:
        DataError: unknown target, a required column missing or not numeric.
    """
    target_names(target)
    steps, y_all = _cut_steps(catalog, target, source)
    keep = np.ones(len(catalog), dtype=bool)
    cuts: list[Cut] = []
    for name, cond, reason in steps:
        if cond is None:
            cuts.append(Cut(name=name, removed=0, skipped=True, reason=reason))
            continue
        new_keep = keep & cond
        cuts.append(Cut(name=name, removed=int(keep.sum() - new_keep.sum())))
        keep = new_keep
    return y_all, keep, cuts


def _cut_steps(
    catalog: pd.DataFrame, target: str, source: str
) -> tuple[list[tuple[str, np.ndarray | None, str]], np.ndarray]:
    """The (name, condition or None, skip reason) cut steps and the (N, T) measured targets."""
    if target == "metallicity":
        (col,) = TARGET_COLUMNS["metallicity"]
        values = _numeric(catalog, col, source)
        steps: list[tuple[str, np.ndarray | None, str]] = [
            (f"{col} finite", np.isfinite(values), ""),
            (f"{col} > 0", values > 0, ""),
        ]
        for other, cond in (("lgm_tot_p50", "> 0"), ("sfr_tot_p50", "> -10")):
            if other in catalog.columns:
                v = _numeric(catalog, other, source)
                keep = v > 0 if other == "lgm_tot_p50" else v > -10
                steps.append((f"{other} {cond}", keep, ""))
            else:
                steps.append((f"{other} {cond}", None, f"no column {other!r} in {source}"))
        return steps, values[:, None]
    lines = TARGET_COLUMNS["bpt_lines"]
    flux = np.stack([_numeric(catalog, c, source) for c in lines], axis=1)
    err = np.stack([_numeric(catalog, f"{c}_err", source) for c in lines], axis=1)
    finite = np.isfinite(flux).all(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr_ok = ((err > 0) & (flux > MIN_LINE_SNR * err)).all(axis=1)
        steps = [
            ("line fluxes finite", finite, ""),
            (f"S/N > {MIN_LINE_SNR:g} in all four lines", snr_ok, ""),
            (f"every flux < {MAX_LINE_FLUX:g}", (flux < MAX_LINE_FLUX).all(axis=1), ""),
        ]
        return steps, np.log10(np.where(flux > 0, flux, np.nan))


def _numeric(catalog: pd.DataFrame, column: str, source: str) -> np.ndarray:
    if column not in catalog.columns:
        raise DataError(f"{source}: missing column {column!r}")
    col = catalog[column]
    if col.dtype.kind not in "iuf":
        conv = pd.to_numeric(col, errors="coerce")
        bad = conv.isna() & col.notna() & (col.astype("string").str.strip() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{source}: column {column!r} is not numeric (row {row}: {col.iloc[row]!r})"
            )
        col = conv
    return col.to_numpy(dtype=np.float64, na_value=np.nan)
