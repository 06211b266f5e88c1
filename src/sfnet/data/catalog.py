"""Galaxy catalogs: read CSV / Parquet / FITS / ECSV tables with MPA-JHU column names, pick
the targets and apply their quality cuts.

Targets are data, not code (:class:`TargetSpec`). A target is written as one string, the
``data.target`` setting (``--target``), saved in the run's ``config.toml``:

- a preset: ``metallicity`` (``oh_p50``, the paper's cuts) or ``bpt_lines`` (log10 of the four
  BPT line fluxes, S/N > 3 and flux < 1e5);
- or catalog columns, comma-separated, each optionally wrapped in ``log10(...)`` and followed
  by its unit in square brackets, then optional quality cuts after ``;``::

      lgm_tot_p50
      log10(sfr_tot_p50)
      lgm_tot_p50, log10(h_alpha_flux) [1e-17 erg / (s cm2)]; z < 0.1; h_alpha_flux/h_alpha_flux_err > 3

  A cut is ``column OP number`` or ``column/column OP number`` with OP one of
  ``> >= < <= == !=``. Every custom target also keeps only rows where its columns are finite
  (and > 0 under ``log10``). A ``log10(x)`` target is named ``log_x``.

Units: ``oh_p50`` is 12 + log10(O/H) (dex); line fluxes are in 1e-17 erg/s/cm^2 and the
``bpt_lines`` target is their base-10 logarithm. A custom target's unit is, in order: the one
in square brackets, the catalog's own (FITS ``TUNITn`` / ECSV unit), the MPA-JHU unit of a known
column (:data:`KNOWN_UNITS`), else none; ``log10`` turns unit ``u`` into ``dex(u)``
(:func:`target_units`). ``objID`` is kept as int64 (or string for non-numeric IDs), never
float: SDSS objIDs have 19 digits and float64 keeps only ~16.
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
CATALOG_NAMES = ("galaxies.csv", "galaxies.parquet", "galaxies.fits", "galaxies.ecsv")

#: The named presets (the paper's two target groups, with its cuts).
PRESETS = ("metallicity", "bpt_lines")

#: Catalog columns read for each preset (see :func:`target_columns` for any target).
TARGET_COLUMNS: dict[str, tuple[str, ...]] = {
    "metallicity": ("oh_p50",),
    "bpt_lines": BPT_LINES,
}

#: Per-column transforms of a custom target.
TRANSFORMS = ("linear", "log10")

#: Units (astropy syntax) of MPA-JHU / SDSS columns and of the synthetic survey's, used when the
#: catalog itself carries none. ``dex(...)``: the column is log10 of a quantity in that unit.
KNOWN_UNITS: dict[str, str] = {
    "oh_p50": "dex",
    "lgm_tot_p50": "dex(solMass)",
    "sfr_tot_p50": "dex(solMass / yr)",
    "z": "",
    "ra": "deg",
    "dec": "deg",
    **{c: "1e-17 erg / (s cm2)" for c in BPT_LINES},
    **{f"{c}_err": "1e-17 erg / (s cm2)" for c in BPT_LINES},
    "true_z": "",
    "true_logmass": "dex(solMass)",
    "true_logsfr": "dex(solMass / yr)",
    "true_delta_ms": "dex",
    "true_log_ssfr": "dex(1 / yr)",
    "true_oh": "dex",
    "true_fibre_bias": "dex",
    "true_bulge_r50_kpc": "kpc",
    "true_disk_r50_kpc": "kpc",
    "true_r50_arcsec": "arcsec",
    "true_pa_deg": "deg",
    "true_disk_gr": "mag",
    "true_dust_av": "mag",
    "true_mag_r": "mag",
    "true_psf_fwhm": "arcsec",
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


_ITEM_RE = re.compile(
    r"^(?:(?P<fn>log10)\(\s*(?P<inner>[^()\s\[\],;]+)\s*\)|(?P<col>[^()\s\[\],;]+))"
    r"\s*(?:\[(?P<unit>[^\[\]]*)\])?$"
)
_CUT_RE = re.compile(
    r"^(?P<a>[^\s/<>=!]+)\s*(?:/\s*(?P<b>[^\s/<>=!]+)\s*)?(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<value>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$"
)
_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">": np.greater,
    ">=": np.greater_equal,
    "<": np.less,
    "<=": np.less_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


@dataclass(frozen=True)
class TargetColumn:
    """One target: a catalog column, its transform and (optionally) its unit.

    Attributes:
        column: catalog column name (``sfr_tot_p50``).
        transform: ``linear`` (as stored) or ``log10`` (the target is ``log_<column>``).
        unit: unit of the column as stored, astropy syntax (``"solMass / yr"``); empty: take it
            from the catalog or :data:`KNOWN_UNITS`.
    """

    column: str
    transform: str = "linear"
    unit: str = ""

    @property
    def name(self) -> str:
        """The target's name: the column, or ``log_<column>`` under ``log10``."""
        return f"log_{self.column}" if self.transform == "log10" else self.column

    def __str__(self) -> str:
        text = f"log10({self.column})" if self.transform == "log10" else self.column
        return f"{text} [{self.unit}]" if self.unit else text


@dataclass(frozen=True)
class QualityCut:
    """A quality cut ``a OP value`` or ``a/b OP value`` on catalog columns."""

    a: str
    op: str
    value: float
    b: str = ""

    def __str__(self) -> str:
        lhs = f"{self.a}/{self.b}" if self.b else self.a
        return f"{lhs} {self.op} {self.value:g}"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.a, self.b) if self.b else (self.a,)


@dataclass(frozen=True)
class TargetSpec:
    """What a run predicts: a preset's or the user's catalog columns, transforms, units, cuts.

    Build one with :func:`parse_target` (``str(spec)`` gives the string back).

    Attributes:
        columns: the T targets in order.
        cuts: extra quality cuts, applied after the targets' own.
        preset: ``metallicity`` / ``bpt_lines`` for a preset (its cuts are the paper's), else
            None.
    """

    columns: tuple[TargetColumn, ...]
    cuts: tuple[QualityCut, ...] = ()
    preset: str | None = None

    @property
    def names(self) -> list[str]:
        """The T target names (``oh_p50``; ``log_h_alpha_flux``; ``lgm_tot_p50``)."""
        return [c.name for c in self.columns]

    @property
    def required(self) -> tuple[str, ...]:
        """Catalog columns the targets are computed from (without error or cut columns)."""
        return tuple(c.column for c in self.columns)

    def __str__(self) -> str:
        head = self.preset or ", ".join(str(c) for c in self.columns)
        return "; ".join([head, *(str(c) for c in self.cuts)])


def parse_target(target: str | TargetSpec) -> TargetSpec:
    """The :class:`TargetSpec` of a ``data.target`` string (see the module docstring).

    Example:
        >>> parse_target("lgm_tot_p50, log10(sfr_tot_p50); z < 0.1").names
        ['lgm_tot_p50', 'log_sfr_tot_p50']

    Raises:
        DataError: an empty or malformed string, an unknown transform, a bad cut.
    """
    if isinstance(target, TargetSpec):
        return target
    text = str(target).strip()
    head, *cut_texts = [p.strip() for p in text.split(";")]
    if not head:
        raise DataError(
            f"target {text!r}: expected a preset ({', '.join(PRESETS)}) or catalog columns, "
            "e.g. 'lgm_tot_p50, log10(sfr_tot_p50) [solMass / yr]; z < 0.1'"
        )
    cuts = tuple(_parse_cut(c, text) for c in cut_texts if c)
    if head in PRESETS:
        names = TARGET_COLUMNS[head]
        transform = "log10" if head == "bpt_lines" else "linear"
        cols = tuple(TargetColumn(c, transform) for c in names)
        return TargetSpec(columns=cols, cuts=cuts, preset=head)
    cols = []
    for item in (i.strip() for i in head.split(",")):
        m = _ITEM_RE.match(item)
        if not item or not m:
            fn = re.match(r"^(\w+)\(", item)
            if fn and fn.group(1) != "log10":
                raise DataError(
                    f"target {text!r}: unknown transform {fn.group(1)!r} (known: log10)"
                )
            raise DataError(
                f"target {text!r}: cannot read {item!r}; write a column, log10(column), "
                "optionally followed by [unit], comma-separated"
            )
        column = m.group("inner") or m.group("col")
        cols.append(
            TargetColumn(column, "log10" if m.group("fn") else "linear", m.group("unit") or "")
        )
    names = [c.name for c in cols]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"target {text!r}: {', '.join(dup)} given twice")
    return TargetSpec(columns=tuple(cols), cuts=cuts)


def _parse_cut(text: str, whole: str) -> QualityCut:
    m = _CUT_RE.match(text.strip())
    if not m:
        raise DataError(
            f"target {whole!r}: cannot read the cut {text!r}; write 'column OP number' or "
            "'column/column OP number' with OP one of > >= < <= == !="
        )
    return QualityCut(m.group("a"), m.group("op"), float(m.group("value")), m.group("b") or "")


def target_names(target: str | TargetSpec) -> list[str]:
    """Names of the targets of a ``data.target`` string.

    ``metallicity`` -> ``["oh_p50"]``; ``bpt_lines`` -> ``["log_nii_6584_flux",
    "log_h_alpha_flux", "log_oiii_5007_flux", "log_h_beta_flux"]`` (order of ``BPT_LINES``);
    ``"lgm_tot_p50, log10(sfr_tot_p50)"`` -> ``["lgm_tot_p50", "log_sfr_tot_p50"]``.
    """
    return parse_target(target).names


def target_columns(target: str | TargetSpec) -> tuple[str, ...]:
    """Catalog columns a target is computed from (a catalog without them has no targets)."""
    return parse_target(target).required


def target_units(
    target: str | TargetSpec, catalog_units: dict[str, str] | None = None
) -> dict[str, str]:
    """Unit (astropy syntax, ``""`` when dimensionless or unknown) of each target, by name.

    Args:
        target: a ``data.target`` string or spec.
        catalog_units: column -> unit read from the catalog file (:func:`catalog_units`).

    Example:
        >>> target_units("log10(sfr_tot_p50)")
        {'log_sfr_tot_p50': 'dex(solMass / yr)'}

    (``sfr_tot_p50`` is already log10 in MPA-JHU, so ``log10`` of it is not meaningful: the
    example only shows the rule.)
    """
    spec = parse_target(target)
    known = catalog_units or {}
    out = {}
    for c in spec.columns:
        unit = c.unit or known.get(c.column) or KNOWN_UNITS.get(c.column, "")
        if spec.preset == "bpt_lines":
            unit = KNOWN_UNITS[c.column]
        if c.transform == "log10":
            unit = f"dex({unit})" if unit else "dex"
        out[c.name] = unit
    return out


def catalog_units(path: Path | str) -> dict[str, str]:
    """Column -> unit string of a FITS or ECSV catalog (columns without a unit left out; empty
    for CSV and Parquet, which carry none)."""
    path = Path(path)
    if path.suffix.lower() not in (".fits", ".fit", ".ecsv"):
        return {}
    from astropy.table import Table

    try:
        fmt = "ascii.ecsv" if path.suffix.lower() == ".ecsv" else "fits"
        table = Table.read(path, format=fmt)
    except Exception:  # noqa: BLE001 - units are optional; read_catalog reports bad files
        return {}
    return {n: str(table[n].unit) for n in table.colnames if table[n].unit is not None}


def units_of(target: str | TargetSpec, data: str | Path | None = None) -> dict[str, str]:
    """Units of a run's targets (:func:`target_units`), with the catalog's own units when
    ``data`` is a dataset folder whose catalog carries them (FITS / ECSV)."""
    found: dict[str, str] = {}
    if data:
        folder = Path(data)
        if folder.is_dir():
            try:
                found = catalog_units(find_catalog(folder))
            except DataError:
                found = {}
    try:
        return target_units(target, found)
    except DataError:
        return {}


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
        ".ecsv": _read_ecsv,
    }
    if suffix not in readers:
        raise DataError(
            f"{path}: unknown catalog format {suffix!r} (use .csv, .parquet, .fits or .ecsv)"
        )
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


def _read_ecsv(path: Path) -> pd.DataFrame:
    from astropy.table import Table

    table = Table.read(path, format="ascii.ecsv")
    df = table.to_pandas()
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


def select_target(
    catalog: pd.DataFrame, target: str | TargetSpec, source: str = "catalog"
) -> TargetSelection:
    """Apply a target's quality cuts and return the targets.

    ``metallicity``: ``oh_p50`` finite, ``oh_p50 > 0``, ``lgm_tot_p50 > 0``,
    ``sfr_tot_p50 > -10`` (the last two only where the column exists; otherwise the cut is
    reported as skipped). ``bpt_lines``: the four fluxes finite, S/N = flux / err > 3 in all
    four lines (``*_err`` columns, err > 0), every flux < 1e5; target = log10(flux).
    Custom columns: each finite (and > 0 under ``log10``). Then the spec's own cuts.

    Args:
        catalog: table from :func:`read_catalog`.
        target: a preset (``metallicity``, ``bpt_lines``), a target string or a
            :class:`TargetSpec` (see the module docstring).
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
    catalog: pd.DataFrame, target: str | TargetSpec, source: str = "catalog"
) -> tuple[np.ndarray, np.ndarray, list[Cut]]:
    """The measured targets of every row and whether each row passes the quality cuts.

    Returns:
        (y, passes, cuts): (N, T) float64 measured targets in physical units (NaN where not
        measurable), (N,) bool, and the cuts in the order applied with their counts.

    Raises:
        DataError: unknown target, a required column missing or not numeric.
    """
    spec = parse_target(target)
    steps, y_all = _cut_steps(catalog, spec, source)
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
    catalog: pd.DataFrame, spec: TargetSpec, source: str
) -> tuple[list[tuple[str, np.ndarray | None, str]], np.ndarray]:
    """The (name, condition or None, skip reason) cut steps and the (N, T) measured targets."""
    if spec.preset == "metallicity":
        steps, y = _metallicity_steps(catalog, source)
    elif spec.preset == "bpt_lines":
        steps, y = _bpt_steps(catalog, source)
    else:
        steps, y = _column_steps(catalog, spec, source)
    with np.errstate(divide="ignore", invalid="ignore"):
        for cut in spec.cuts:
            v = _numeric(catalog, cut.a, source)
            if cut.b:
                v = v / _numeric(catalog, cut.b, source)
            steps.append((str(cut), _OPS[cut.op](v, cut.value), ""))
    return steps, y


def _column_steps(
    catalog: pd.DataFrame, spec: TargetSpec, source: str
) -> tuple[list[tuple[str, np.ndarray | None, str]], np.ndarray]:
    """Custom columns: each finite, and > 0 where log10 is taken."""
    steps: list[tuple[str, np.ndarray | None, str]] = []
    ys = []
    for c in spec.columns:
        v = _numeric(catalog, c.column, source)
        steps.append((f"{c.column} finite", np.isfinite(v), ""))
        if c.transform == "log10":
            with np.errstate(invalid="ignore"):
                steps.append((f"{c.column} > 0 (for log10)", v > 0, ""))
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.log10(np.where(v > 0, v, np.nan))
        ys.append(v)
    return steps, np.stack(ys, axis=1)


def _metallicity_steps(
    catalog: pd.DataFrame, source: str
) -> tuple[list[tuple[str, np.ndarray | None, str]], np.ndarray]:
    """The paper's metallicity cuts (unchanged)."""
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


def _bpt_steps(
    catalog: pd.DataFrame, source: str
) -> tuple[list[tuple[str, np.ndarray | None, str]], np.ndarray]:
    """The paper's line cuts (unchanged): finite, S/N > 3 in all four lines, flux < 1e5."""
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


def catalog_bpt(catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """BPT coordinates (log [NII]/Halpha, log [OIII]/Hbeta), each (N,), from a catalog's four
    line fluxes, or None when it lacks them. Rows without a positive flux, or (where the
    ``*_err`` columns exist) without S/N > 3 in all four lines, are NaN (not drawn).
    """
    if not all(c in catalog.columns for c in BPT_LINES):
        return None
    try:
        flux = np.stack([_numeric(catalog, c, "catalog") for c in BPT_LINES], axis=1)
        ok = np.isfinite(flux).all(axis=1) & (flux > 0).all(axis=1)
        if all(f"{c}_err" in catalog.columns for c in BPT_LINES):
            err = np.stack([_numeric(catalog, f"{c}_err", "catalog") for c in BPT_LINES], axis=1)
            with np.errstate(invalid="ignore"):
                ok &= ((err > 0) & (flux > MIN_LINE_SNR * err)).all(axis=1)
    except DataError:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        logf = np.where(ok[:, None], np.log10(np.where(flux > 0, flux, np.nan)), np.nan)
    return logf[:, 0] - logf[:, 1], logf[:, 2] - logf[:, 3]


def failed_cuts(
    catalog: pd.DataFrame, target: str | TargetSpec, source: str = "catalog"
) -> tuple[np.ndarray, np.ndarray]:
    """The measured targets of every row and the first quality cut each row fails.

    Returns:
        (y, failed): (N, T) float64 measured targets in physical units (NaN where not
        measurable) and (N,) str, the name of the first cut the row fails ("" where it passes).
    """
    steps, y_all = _cut_steps(catalog, parse_target(target), source)
    failed = np.full(len(catalog), "", dtype=object)
    for name, cond, _ in steps:
        if cond is not None:
            failed[(failed == "") & ~np.asarray(cond, dtype=bool)] = name
    return y_all, failed
