"""Stata .dta reader.

Stata has the system missing value ``.`` and 26 extended missing values, ``.a`` to ``.z``, that
studies use for reasons ("refused", "don't know", "not asked"). The missing mask is derived
independently of the values read: the file is read twice with pyreadstat,

* with ``user_missing=False``, where every missing value (``.`` and ``.a``-``.z``) is NaN and
  every other cell is its number: this read decides *whether* a cell is missing and gives the
  values;
* with ``user_missing=True``, where extended missing values arrive as the letters
  ``"a"``..``"z"``: this read only says *which* extended missing value a missing cell holds.

The second read alone is not trustworthy: in integer columns (byte, int, long) where ``.a``-``.z``
also occur, pyreadstat 1.2-1.3 returns system missing ``.`` as an arbitrary number (whatever was
in memory), so a missing answer would become an on-scale one (issue 8, case
``stata-dot-missing``). A cell that the two reads disagree on in any other way is refused.

Extended missing values go into `RawTable.missing_codes` with their value label, or
``missing:.a`` when they have none. ``.`` is an ordinary empty cell (``None``, no code).

Row numbers are observation numbers, 1..n, as Stata's ``_n`` and Data Editor show them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from trackii_eval.ingest.readers.base import (
    ParsedTable,
    ingest_error,
    parsed_from_statistical,
)
from trackii_eval.ingest.readers.base import python_scalar as _scalar

__all__ = ["read_stata"]

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


def _read(raw: bytes, path: Path, encoding: str | None, user_missing: bool) -> Any:
    import pyreadstat  # deferred: only SPSS/Stata users pay for loading readstat

    try:
        return pyreadstat.read_dta(io.BytesIO(raw), user_missing=user_missing, encoding=encoding)
    except Exception as exc:
        # ReadstatError, PyreadstatError, LookupError for a bad encoding, UnicodeDecodeError:
        # to the user all mean "this is not a readable .dta".
        raise ingest_error(
            path,
            f"cannot be read as a Stata .dta file ({type(exc).__name__})",
            "Save it again from Stata (save, replace), or pass encoding= for a pre-Stata-14 "
            "file whose text is garbled.",
        ) from exc


def read_stata(raw: bytes, path: Path, *, encoding: str | None) -> ParsedTable:
    """Read a Stata data file, separating extended missing values from the data.

    Parameters
    ----------
    raw : bytes
        File content (read once, so the hash matches what was parsed).
    path : Path
        The file, for error messages.
    encoding : str, optional
        Encoding of strings in pre-Stata-14 files, which do not record one.

    Returns
    -------
    ParsedTable
        Numbers as ``int``/``float``, strings as ``str``, dates as pyreadstat returns them;
        ``.`` is ``None`` with no code; an extended-missing cell is ``None`` in the data and
        its label (or ``missing:.x``) in the missing codes.

    Raises
    ------
    IngestError
        If pyreadstat cannot read the file, or its two reads disagree on a cell that is not
        missing (a reader fault that would otherwise change an answer silently).
    """
    plain, meta = _read(raw, path, encoding, user_missing=False)
    lettered, _ = _read(raw, path, encoding, user_missing=True)

    columns = [str(c) for c in plain.columns]
    types: dict[str, str] = dict(getattr(meta, "readstat_variable_types", None) or {})
    value_labels: dict[str, dict[Any, str]] = {
        str(k): dict(v) for k, v in (meta.variable_value_labels or {}).items()
    }
    n = len(plain)
    values = np.empty((n, len(columns)), dtype=object)
    codes = np.full((n, len(columns)), None, dtype=object)
    for j, name in enumerate(columns):
        column = plain[name]
        numeric = (types[name] != "string") if name in types else column.dtype.kind in "iufbM"
        if not numeric:
            values[:, j] = [_scalar(v) for v in column.tolist()]
            continue
        # Whether a cell is missing comes from the plain read only.
        missing = column.isna().to_numpy()
        if column.dtype == object and not all(
                isinstance(v, int | float) for v in column.dropna().tolist()):
            # a date-formatted variable: dates as pyreadstat gives them
            values[:, j] = [_scalar(v) for v in column.tolist()]
        else:
            out = np.array(column.tolist(), dtype=object)
            out[missing] = None
            values[:, j] = out
            _check_agreement(path, name, column, lettered[name], missing)
        if missing.any():
            labels = value_labels.get(name, {})
            letters = lettered[name]
            for i in np.flatnonzero(missing):
                letter = letters.iat[i]
                # the lettered read only names which missing value; anything else there (NaN,
                # or an arbitrary number from the reader) is the system missing value "."
                if isinstance(letter, str) and letter in _LETTERS:
                    label = labels.get(letter)
                    text = label.strip() if isinstance(label, str) else ""
                    codes[i, j] = text or f"missing:.{letter}"
    return parsed_from_statistical(columns, values, codes, meta, value_labels)


def _check_agreement(path: Path, name: str, plain: Any, lettered: Any,
                     missing: np.ndarray) -> None:
    """Refuse the file when the two reads disagree on a cell that is not missing."""
    present = ~missing
    if not present.any():
        return
    other = np.asarray(lettered.to_numpy(dtype=object)[present])
    numbers = np.array([float(v) if isinstance(v, int | float) and not isinstance(v, bool)
                        else np.nan for v in other])
    mine = plain.to_numpy(dtype=float)[present]
    bad = ~(numbers == mine)
    if bad.any():
        row = int(np.flatnonzero(present)[np.flatnonzero(bad)[0]]) + 1
        raise ingest_error(
            path,
            f"row {row}, column {name!r}: the Stata reader gives two different values for "
            "this cell (a reader fault)",
            "Save the file again from Stata (save, replace) or export it as CSV; report the "
            "file's Stata version.",
        )
