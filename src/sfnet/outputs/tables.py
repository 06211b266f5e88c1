"""Prediction tables the way astronomers read them: pandas or astropy, with units.

:func:`sfnet.predict.table_of_predictions` lays out one row per galaxy (objID,
``pred_<target>``, the k active features); :func:`to_astropy` attaches units; :func:`write_table` writes Parquet, CSV, FITS or
ECSV chosen by the file's extension (atomically, see :mod:`sfnet.io`).

Units: ``oh_p50`` (12 + log O/H) is in ``dex``; the line targets are log10 of fluxes in
1e-17 erg/s/cm^2, i.e. ``dex(1e-17 erg / (s cm2))``. FITS has no logarithmic units (no
TUNITn is written): FITS files carry units and descriptions in astropy's serialized-column
block of COMMENT cards, which ``Table.read`` restores; other FITS readers see plain numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sfnet.errors import UserError

#: Output formats of :func:`write_table`, by file extension.
TABLE_FORMATS = (".parquet", ".csv", ".fits", ".ecsv")

#: Prefixes of columns derived from a target or catalog column (same unit as the column).
_PREFIXES = ("pred_", "measured_", "true_")
#: Columns of RMSE values (comparison tables): dex for both target groups.
_RMSE_COLUMNS = {"rmse", "val_rmse", "sfnet_mean", "sfnet_se", "pca_rmse"}


def _base(name: str) -> str:
    for prefix in _PREFIXES:
        name = name.removeprefix(prefix)
    return name


def target_unit(name: str):
    """The astropy unit of a column of a table sfnet writes, or None for a plain number.

    ``oh_p50`` -> ``dex``; ``log_<line>_flux`` -> ``dex(1e-17 erg / (s cm2))``; a line flux
    ``<line>_flux`` (or ``_flux_err``) -> ``1e-17 erg / (s cm2)``; ``ra``/``dec`` -> ``deg``;
    RMSE columns -> ``dex``. The same unit for ``pred_``, ``measured_`` and ``true_`` columns.

    Example:
        >>> target_unit("measured_oh_p50")
        Unit("dex")
    """
    import astropy.units as u

    from sfnet.data.catalog import KNOWN_UNITS

    raw = str(name).removeprefix("pred_").removeprefix("measured_")
    name = _base(str(name))
    flux = 1e-17 * u.erg / u.s / u.cm**2
    if name == "oh_p50" or name in _RMSE_COLUMNS:
        return u.dex
    if name.startswith("log_") and name.endswith("_flux"):
        return u.dex(flux)
    if name.endswith(("_flux", "_flux_err")):
        return u.Unit(flux)
    if name in ("ra", "dec"):
        return u.deg
    # catalog-column targets: the known MPA-JHU / synthetic-survey units (log10 -> dex(unit))
    text = KNOWN_UNITS.get(raw)
    if text is None and raw.startswith("log_") and raw[4:] in KNOWN_UNITS:
        inner = KNOWN_UNITS[raw[4:]]
        text = f"dex({inner})" if inner else "dex"
    return parse_unit(text) if text else None


def parse_unit(text: str):
    """An astropy unit from its string (``"dex(solMass)"`` -> a logarithmic unit), or None
    when astropy cannot read it."""
    import astropy.units as u

    try:
        return u.Unit(text)
    except ValueError:
        return None


def _description(name: str) -> str | None:
    name = _base(str(name))
    if name == "oh_p50":
        return "12 + log10(O/H), dex"
    if name.startswith("log_") and name.endswith("_flux"):
        return "log10 of the line flux in 1e-17 erg/s/cm^2"
    if name.endswith(("_flux", "_flux_err")):
        return "line flux in 1e-17 erg/s/cm^2"
    return None


def to_astropy(frame: pd.DataFrame, units: dict[str, str] | None = None):
    """The DataFrame as an :class:`astropy.table.QTable` with units on the target columns.

    Columns with a physical unit (:func:`target_unit`: targets with or without the ``pred_``
    / ``measured_`` prefix, line fluxes, ra/dec, RMSEs, known catalog columns) become
    quantities with a description; other columns (objID, feature indices, activations, flags)
    are plain columns. ``units``: target name -> unit string (e.g. from
    :func:`sfnet.data.catalog.units_of`), applied to ``<name>``, ``pred_<name>`` and
    ``measured_<name>``; it wins over the built-in units.

    Example:
        >>> t = to_astropy(run.predict(images))
        >>> t["pred_oh_p50"].unit
        Unit("dex")
    """
    import astropy.units as u
    from astropy.table import QTable

    table = QTable()
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype == object:
            values = values.astype(str)
        base = str(name).removeprefix("pred_").removeprefix("measured_")
        given = (units or {}).get(base)
        unit = parse_unit(given) if given else target_unit(str(name))
        if unit is None:
            table[name] = values
        elif isinstance(unit, u.FunctionUnitBase):
            table[name] = u.Dex(values, unit)
        else:
            table[name] = values * unit
        desc = _description(str(name))
        if desc:
            table[name].info.description = desc
    return table


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV (no index, floats to 6 significant digits), atomically."""
    from sfnet.io import atomic_write_bytes

    atomic_write_bytes(Path(path), frame.to_csv(index=False, float_format="%.6g").encode())


def format_number(value: Any, spec: str = ".4f", missing: str = "n/a") -> str:
    """``value`` formatted with ``spec``; ``missing`` for None, NaN or inf; a non-number as
    ``str(value)``."""
    if value is None:
        return missing
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return missing if not math.isfinite(f) else format(f, spec)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a markdown table (``|`` inside a cell becomes ``/``)."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"

    return [line(header), "|---" * len(header) + "|", *(line(r) for r in rows)]


def write_table(frame: pd.DataFrame, path: Path, units: dict[str, str] | None = None) -> Path:
    """Write ``frame`` to ``path`` in the format its extension names, atomically.

    ``.parquet`` and ``.csv`` via pandas; ``.fits`` and ``.ecsv`` via astropy with units
    (:func:`to_astropy`; ``units``: target name -> unit string, e.g. :attr:`sfnet.runs.Run.units`,
    for targets whose unit only their catalog knows), readable back with
    ``astropy.table.Table.read(path)``.

    Raises:
        UserError: an extension other than those in :data:`TABLE_FORMATS`.

    Example:
        >>> write_table(run.predict("new_galaxies/"), "predictions.fits")
    """
    from sfnet.io import atomic_write

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise UserError(f"{path}: output must end in {', '.join(TABLE_FORMATS)}")
    if suffix == ".parquet":
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    elif suffix == ".csv":
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        table = to_astropy(frame, units)
        fmt = "fits" if suffix == ".fits" else "ascii.ecsv"

        def _write(tmp: Path) -> None:
            with warnings.catch_warnings():  # dex is kept in astropy's header block; said above
                warnings.filterwarnings("ignore", message=".*could not be saved in native FITS")
                table.write(tmp, format=fmt, overwrite=True)

        atomic_write(path, _write)
    return path
