"""Stata .dta reader.

Stata has 26 extended missing values, ``.a`` to ``.z``, that studies use for reasons
("refused", "don't know", "not asked"). pyreadstat, called with ``user_missing=True``, returns
them as the letters ``"a"``..``"z"`` in numeric columns; this module moves them into
`RawTable.missing_codes` with their value label, or ``missing:.a`` when they have none. The
system missing value ``.`` is an ordinary empty cell (``None``, no code).

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
        an extended-missing cell is ``None`` in the data and its label in the missing codes.

    Raises
    ------
    IngestError
        If pyreadstat cannot read the file.
    """
    import pyreadstat  # deferred: only SPSS/Stata users pay for loading readstat

    try:
        frame, meta = pyreadstat.read_dta(io.BytesIO(raw), user_missing=True, encoding=encoding)
    except Exception as exc:
        # ReadstatError, PyreadstatError, LookupError for a bad encoding, UnicodeDecodeError:
        # to the user all mean "this is not a readable .dta".
        raise ingest_error(
            path,
            f"cannot be read as a Stata .dta file ({type(exc).__name__})",
            "Save it again from Stata (save, replace), or pass encoding= for a pre-Stata-14 "
            "file whose text is garbled.",
        ) from exc

    columns = [str(c) for c in frame.columns]
    types: dict[str, str] = dict(getattr(meta, "readstat_variable_types", None) or {})
    value_labels: dict[str, dict[Any, str]] = {
        str(k): dict(v) for k, v in (meta.variable_value_labels or {}).items()
    }
    n = len(frame)
    values = np.empty((n, len(columns)), dtype=object)
    codes = np.full((n, len(columns)), None, dtype=object)
    for j, name in enumerate(columns):
        column = frame[name].tolist()
        # A one-letter string is a missing code only in a numeric variable; in a string
        # variable "a" is an answer. Without readstat's type, a column holding any number
        # is numeric.
        if name in types:
            numeric = types[name] != "string"
        else:
            numeric = any(isinstance(v, int | float) and not isinstance(v, bool) for v in column)
        labels = value_labels.get(name, {})
        for i, raw_value in enumerate(column):
            value = _scalar(raw_value)
            if numeric and isinstance(value, str) and value in _LETTERS:
                label = labels.get(value)
                text = label.strip() if isinstance(label, str) else ""
                codes[i, j] = text or f"missing:.{value}"
                value = None
            values[i, j] = value
    return parsed_from_statistical(columns, values, codes, meta, value_labels)
