"""SPSS .sav/.zsav reader.

The missing mask is derived independently of the values read (issue 8): the file is read
twice with pyreadstat, once with ``user_missing=False`` (every missing cell, system or
user-defined, is NaN: this read decides *whether* a cell is missing and gives the values) and
once with ``user_missing=True`` (user-defined missing values, say -99 "Refused", arrive as their
codes: this read only names *which* missing value a missing cell holds). Each user-missing value
goes into `RawTable.missing_codes`, labelled. Reading them as NaN would merge "refused" with
"skipped", and reading them as numbers would put -99 into a mean. A cell the two reads
disagree on otherwise is refused, never guessed.

Row numbers are case numbers, 1..n, as SPSS's Data View shows them.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from trackii_eval.ingest.readers.base import (
    ParsedTable,
    ingest_error,
    parsed_from_statistical,
)
from trackii_eval.ingest.readers.base import python_scalar as _scalar

__all__ = ["format_missing_value", "read_spss"]


def format_missing_value(value: object) -> str:
    """Render a missing value for a ``missing:<value>`` code.

    Parameters
    ----------
    value : object
        The user-missing value.

    Returns
    -------
    str
        Integral floats without ``.0`` (``-99``), other values as ``str``.
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_declared_missing(value: object, ranges: list[dict[str, Any]]) -> bool:
    for spec in ranges:
        lo, hi = spec.get("lo"), spec.get("hi")
        if isinstance(value, str) or isinstance(lo, str):
            # String variables can only declare discrete missing values.
            if value == lo or value == hi:
                return True
            continue
        if isinstance(value, int | float) and lo is not None and hi is not None:
            if lo <= value <= hi:
                return True
    return False


def _label_for(value: object, labels: dict[Any, str]) -> str | None:
    label = labels.get(value)
    if label is None and isinstance(value, str):
        # SPSS pads short string values; labels may be stored padded or not.
        label = labels.get(value.rstrip()) or labels.get(value.strip())
    return label.strip() if isinstance(label, str) and label.strip() else None


def read_spss(raw: bytes, path: Path, *, encoding: str | None) -> ParsedTable:
    """Read an SPSS system file, separating user-missing values from the data.

    Parameters
    ----------
    raw : bytes
        File content (read once, so the hash matches what was parsed).
    path : Path
        The file, for error messages.
    encoding : str, optional
        Overrides the encoding recorded in the file (for old files that record it wrongly).

    Returns
    -------
    ParsedTable
        Numbers as ``float``, strings as ``str``, dates as pyreadstat returns them; a
        user-missing cell is ``None`` in the data and its value label (or ``missing:<value>``)
        in the missing codes.

    Raises
    ------
    IngestError
        If pyreadstat cannot read the file, or its two reads disagree on a cell that is not
        missing.
    """
    frame, meta = _read(raw, path, encoding, user_missing=True)
    plain, _ = _read(raw, path, encoding, user_missing=False)

    columns = [str(c) for c in frame.columns]
    value_labels: dict[str, dict[Any, str]] = {
        str(k): dict(v) for k, v in (meta.variable_value_labels or {}).items()
    }
    missing_ranges: dict[str, list[dict[str, Any]]] = dict(meta.missing_ranges or {})
    n = len(frame)
    values = np.empty((n, len(columns)), dtype=object)
    codes = np.full((n, len(columns)), None, dtype=object)
    for j, name in enumerate(columns):
        ranges = missing_ranges.get(name, [])
        labels = value_labels.get(name, {})
        column = plain[name]
        if column.dtype.kind == "f":
            # Numeric (the common case, vectorised): missing by the plain read only; where
            # the coded read has a value there, it is a user-missing value.
            missing = column.isna().to_numpy()
            out = np.array(column.tolist(), dtype=object)
            out[missing] = None
            values[:, j] = out
            coded = frame[name].to_numpy(dtype=float)
            present = ~missing
            if (coded[present] != column.to_numpy()[present]).any():
                i = int(np.flatnonzero(present & (coded != column.to_numpy()))[0])
                raise _disagree(path, i, name)
            for i in np.flatnonzero(missing & ~np.isnan(coded)):
                code = float(coded[i])
                codes[i, j] = _label_for(code, labels) or f"missing:{format_missing_value(code)}"
            continue
        coded_cells = frame[name].tolist()
        for i, raw_value in enumerate(column.tolist()):
            value = _scalar(raw_value)
            code = _scalar(coded_cells[i])
            declared = code is not None and bool(ranges) and _is_declared_missing(code, ranges)
            if value is None and code is not None:
                # Missing by the plain read, a value by the coded read: a user-missing value.
                codes[i, j] = _label_for(code, labels) or f"missing:{format_missing_value(code)}"
            elif declared and value is not None and isinstance(value, str):
                # pyreadstat keeps string user-missing values in the plain read.
                codes[i, j] = _label_for(code, labels) or f"missing:{format_missing_value(code)}"
                value = None
            elif value != code and not (value is None and code is None):
                raise _disagree(path, i, name)
            values[i, j] = value
    return parsed_from_statistical(columns, values, codes, meta, value_labels)


def _disagree(path: Path, i: int, name: str) -> Exception:
    return ingest_error(
        path,
        f"row {i + 1}, column {name!r}: the SPSS reader gives two different values for this "
        "cell (a reader fault)",
        "Save the file again from SPSS (File > Save As > .sav) or export it as CSV.",
    )


def _read(raw: bytes, path: Path, encoding: str | None, *, user_missing: bool) -> Any:
    import pyreadstat  # deferred: only SPSS/Stata users pay for loading readstat

    try:
        return pyreadstat.read_sav(
            io.BytesIO(raw),
            user_missing=user_missing,
            apply_value_formats=False,
            encoding=encoding,
        )
    except Exception as exc:
        # ReadstatError, PyreadstatError, LookupError for a bad encoding, UnicodeDecodeError:
        # to the user all mean "this is not a readable .sav".
        raise ingest_error(
            path,
            f"cannot be read as an SPSS .sav file ({type(exc).__name__})",
            "Save it again from SPSS (File > Save As > .sav), or pass encoding= if the text "
            "is garbled.",
        ) from exc
