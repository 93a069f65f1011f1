"""Shared pieces of the readers: the `RawTable` they all return and the helpers they share.

Every reader turns one wave file into the same shape, so validation and storage downstream never
need to know which platform a file came from. The helpers here hold the rules that must be the
same for every format: what counts as an empty cell, how a header row becomes column names, how
row numbers are counted, and how times are normalised.

Nothing in this module puts a cell value into an exception message: cells can hold direct
identifiers (e-mail addresses, IP addresses, names), and error messages end up in logs.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from trackii_eval.errors import IngestError

__all__ = [
    "FORMATS",
    "ROW_META_COLUMNS",
    "Assembled",
    "FormatName",
    "ParsedTable",
    "RawTable",
    "assemble_records",
    "canonical_text",
    "clean_cell",
    "empty_codes",
    "frame_from_rows",
    "ingest_error",
    "make_row_meta",
    "parse_bool",
    "parse_number",
    "parse_timestamps",
    "python_scalar",
    "zone_stated",
]

FormatName = Literal["csv", "excel", "spss", "stata", "qualtrics", "kobo"]
FORMATS: tuple[FormatName, ...] = get_args(FormatName)

ROW_META_COLUMNS: tuple[str, ...] = (
    "response_id",
    "submitted_at",
    "finished",
    "is_test",
    "test_reason",
)


@dataclass(frozen=True, eq=False)
class RawTable:
    """One wave file as read, before any validation.

    ``eq=False`` because comparing tables field by field would compare DataFrames, whose ``==``
    is element-wise and cannot be turned into a single bool; compare ``sha256`` instead.

    Attributes
    ----------
    path : Path
        The file that was read.
    format : str
        The reader used: one of ``"csv"``, ``"excel"``, ``"spss"``, ``"stata"``,
        ``"qualtrics"``, ``"kobo"``.
    sha256 : str
        Hex SHA-256 of the file's bytes, for idempotent re-ingest.
    data : pd.DataFrame
        One row per data row, every column of dtype object, columns named by their canonical
        names, index ``0..n_rows-1``. Text formats (CSV, Excel, Qualtrics, KoboToolbox) give
        stripped strings with no numeric coercion; SPSS and Stata give numbers as Python
        ``int``/``float``, strings as ``str`` and dates as the datetime objects pyreadstat
        returns. Empty cells, SPSS system-missing and Stata ``.`` are ``None``, and so are
        declared-missing cells (see `missing_codes`).
    missing_codes : pd.DataFrame
        Same index and columns as `data`, dtype object. ``None`` except where the cell holds a
        declared missing value (SPSS user-missing, Stata ``.a``-``.z``); there it holds that
        value's label verbatim (e.g. ``"Refused"``), or ``"missing:-99"`` /
        ``"missing:.c"`` when the value has no label.
    row_numbers : np.ndarray
        int64, one per data row: the row as the user sees it. For CSV and Qualtrics this is
        the record number counting header rows and blank lines (a CSV's first data row is 2,
        a three-header Qualtrics export's is 4); a quoted cell that spans lines is one record,
        as a spreadsheet shows it. For Excel it is the sheet's row number. For SPSS and Stata
        it is the case number, ``1..n``.
    source_columns : dict[str, str]
        Canonical name -> header exactly as the file spells it (Kobo group paths and label
        headers are kept here).
    column_labels : dict[str, str]
        Canonical name -> question text, for columns that have one: SPSS variable labels,
        Stata variable labels, Qualtrics' second header row, KoboToolbox label headers.
    value_labels : dict[str, dict[Any, str]]
        Canonical name -> {value: label}, SPSS and Stata only, keys as pyreadstat gives them
        (floats for SPSS, ints and ``"a"``-``"z"`` for Stata).
    row_meta : pd.DataFrame
        Indexed like `data`, columns ``response_id`` (object), ``submitted_at``
        (datetime64, tz-naive: UTC when the file states its time zone, as written otherwise),
        ``finished`` (pandas ``boolean``, ``<NA>`` when the platform records nothing),
        ``is_test`` (bool) and ``test_reason`` (object, ``None`` unless ``is_test``).
    metadata_columns : frozenset[str]
        Canonical names of platform metadata columns (timestamps, ids, status fields), so a
        validator does not report them as unknown items.
    identifier_columns : frozenset[str]
        Canonical names of columns that are direct identifiers by platform convention.
        Qualtrics ``ExternalReference`` is included even though studies often put their
        participant code there: treat it as sensitive and decide downstream.
    submitted_utc : np.ndarray or None
        bool, one per row: True where ``row_meta.submitted_at`` is UTC because the file stated
        the time's zone (an offset, Qualtrics' ImportId time zone, Kobo's UTC
        ``_submission_time``); False where it is the time as written (study-local downstream).
    """

    path: Path
    format: str
    sha256: str
    data: pd.DataFrame
    missing_codes: pd.DataFrame
    row_numbers: np.ndarray
    source_columns: dict[str, str]
    column_labels: dict[str, str]
    value_labels: dict[str, dict[Any, str]]
    row_meta: pd.DataFrame
    metadata_columns: frozenset[str]
    identifier_columns: frozenset[str]
    # bool per row: True where row_meta's submitted_at is UTC because the file stated its zone
    # (an offset, a Qualtrics time zone, Kobo's UTC _submission_time); False where it is the
    # time as written, which ingest takes as study-local. None: no flags (all as written).
    submitted_utc: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        """Number of data rows.

        Returns
        -------
        int
            ``len(self.data)``.
        """
        return len(self.data)


@dataclass
class ParsedTable:
    """What a format reader hands back before platform conventions are applied.

    Internal: `read_table` adds the hash, the row metadata and the metadata/identifier column
    sets, which depend on the platform (Qualtrics, KoboToolbox) rather than on the file format
    (a Qualtrics export can arrive as CSV, XLSX or SPSS).
    """

    data: pd.DataFrame
    missing_codes: pd.DataFrame
    row_numbers: np.ndarray
    source_columns: dict[str, str]
    column_labels: dict[str, str] = field(default_factory=dict)
    value_labels: dict[str, dict[Any, str]] = field(default_factory=dict)
    # Column -> IANA time zone the file says its timestamps are in (Qualtrics ImportId row).
    time_zones: dict[str, str] = field(default_factory=dict)
    # Qualtrics' legacy export names its metadata differently (ResponseID, EmailAddress, ...).
    qualtrics_legacy: bool = False


@dataclass
class Assembled:
    """Header and data rows of a grid of text cells, after the checks every text format shares.

    Attributes
    ----------
    columns : list[str]
        Header names, stripped, in file order.
    positions : list[int]
        0-based grid column of each kept column (blank spacer columns are dropped), so callers
        can read other header rows (Qualtrics' question text) at the same positions.
    rows : list[list[str | None]]
        Data rows, each ``len(columns)`` long.
    row_numbers : list[int]
        1-based grid row of each data row.
    """

    columns: list[str]
    positions: list[int]
    rows: list[list[str | None]]
    row_numbers: list[int]


def ingest_error(path: Path, problem: str, fix: str) -> IngestError:
    """Build an `IngestError` that names the file, the problem and what to do about it.

    Parameters
    ----------
    path : Path
        The file being read.
    problem : str
        What is wrong. Must not contain cell values.
    fix : str
        What the user can do.

    Returns
    -------
    IngestError
        The error, for the caller to raise.
    """
    return IngestError(f"{path}: {problem}. {fix}")


def clean_cell(value: object) -> str | None:
    """Strip a text cell, turning empty or whitespace-only cells into ``None``.

    Parameters
    ----------
    value : object
        A cell as a text reader produced it (``str`` or ``None``).

    Returns
    -------
    str or None
        The stripped text, or ``None`` when nothing is left.
    """
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def canonical_text(value: object) -> str | None:
    """The one text form of an identifier or attribute value, whatever reader produced it.

    A participant code, side, arm, dialogue or roster id read as the number ``1001.0`` from an
    SPSS or Stata file must be the same person as the text ``"1001"`` from a CSV (issue 8,
    case ``numeric-id-across-formats``). Numbers are written as a spreadsheet shows them
    (integral values without ``.0``, as `csv_excel` renders Excel cells); text is only
    stripped, so leading zeros in text codes (``"0042"``) are kept.

    Parameters
    ----------
    value : object
        A cell from any reader: ``str``, Python or numpy number, ``None``/NaN.

    Returns
    -------
    str or None
        The text, or ``None`` for an empty or missing cell.
    """
    value = python_scalar(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    text = str(value).strip()
    return text or None


def _clean_header(value: object) -> str | None:
    # A BOM can survive into the first header cell when the caller forces encoding="utf-8"
    # on a file saved with one; it is never part of a column name.
    text = clean_cell(value)
    if text is None:
        return None
    return text.lstrip("\ufeff").strip() or None


def assemble_records(
    path: Path,
    records: Sequence[Sequence[object]],
    header_index: int,
    data_start: int,
) -> Assembled:
    """Turn a grid of records into named columns and data rows.

    Blank records are skipped (they still count for row numbers). Header cells that are empty
    are dropped when their column holds no data (trailing delimiters, spacer columns); a
    column with data but no header, a data row longer than the header, or a repeated header
    name is a file-level problem.

    Parameters
    ----------
    path : Path
        The file, for error messages.
    records : Sequence of Sequence
        The grid; record ``i`` is row ``i + 1`` as the user sees it.
    header_index : int
        0-based index of the header record.
    data_start : int
        0-based index of the first record that may hold data.

    Returns
    -------
    Assembled
        Columns, their grid positions, the data rows and their row numbers.

    Raises
    ------
    IngestError
        If the header is blank, a column has values but no header, a row is longer than the
        header, or two columns share a name.
    """
    header = [_clean_header(c) for c in records[header_index]]
    header_row = header_index + 1
    if not any(h is not None for h in header):
        raise ingest_error(
            path,
            f"row {header_row} should hold the column names but is empty",
            "Point header_row at the row with the column names.",
        )
    raw_rows: list[list[str | None]] = []
    row_numbers: list[int] = []
    for index in range(data_start, len(records)):
        cells = [clean_cell(c) for c in records[index]]
        if any(c is not None for c in cells):
            raw_rows.append(cells)
            row_numbers.append(index + 1)

    width = max([len(header), *(len(r) for r in raw_rows)])
    positions: list[int] = []
    for j in range(width):
        named = j < len(header) and header[j] is not None
        if named:
            positions.append(j)
            continue
        first_with_data = next(
            (n for n, r in zip(row_numbers, raw_rows, strict=True) if j < len(r) and r[j]),
            None,
        )
        if first_with_data is None:
            # An unnamed, empty column: a trailing delimiter or a spacer column. Dropping it
            # loses nothing.
            continue
        below = _likely_header_below(raw_rows, row_numbers)
        hint = (f" If the column names are on row {below}, add header_row: {below} to this "
                "wave in study.yaml." if below is not None else "")
        if j >= len(header):
            row = raw_rows[row_numbers.index(first_with_data)]
            n_fields = max(k for k, c in enumerate(row) if c is not None) + 1
            raise ingest_error(
                path,
                f"row {first_with_data} has {n_fields} fields but the header on row "
                f"{header_row} has {len(header)}",
                "Add the missing column names to the header; in a CSV file, also check the "
                "delimiter and the quoting of that row." + hint,
            )
        raise ingest_error(
            path,
            f"column {j + 1} has values (first on row {first_with_data}) but no name in the "
            f"header on row {header_row}",
            "Give the column a name in the header row or delete it." + hint,
        )

    columns = [str(header[j]) for j in positions]
    seen: dict[str, int] = {}
    for j, name in zip(positions, columns, strict=True):
        if name in seen:
            raise ingest_error(
                path,
                f"the header on row {header_row} names two columns {name!r} "
                f"(columns {seen[name] + 1} and {j + 1})",
                "Rename one of them so every column name is unique.",
            )
        seen[name] = j

    rows = [[r[j] if j < len(r) else None for j in positions] for r in raw_rows]
    return Assembled(columns=columns, positions=positions, rows=rows, row_numbers=row_numbers)


def _likely_header_below(rows: Sequence[Sequence[str | None]], numbers: Sequence[int]
                         ) -> int | None:
    """Row number of the first row that looks like column names: as wide as the widest row,
    every cell filled with distinct text that is not a number (title rows above it)."""
    width = max((len(r) for r in rows), default=0)
    for row, number in zip(rows[:30], numbers[:30], strict=False):
        cells = [c for c in row if c is not None]
        if (len(cells) >= max(2, width - 1) and len(set(cells)) == len(cells)
                and all(parse_number(c) is None for c in cells)):
            return number
    return None


def frame_from_rows(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> pd.DataFrame:
    """Build an all-object DataFrame with a ``RangeIndex``.

    Parameters
    ----------
    columns : Sequence[str]
        Column names.
    rows : Sequence of Sequence
        Row values, each as long as `columns`.

    Returns
    -------
    pd.DataFrame
        dtype object throughout, so pandas never infers numbers or its string dtype.
    """
    index = pd.RangeIndex(len(rows))
    cols = pd.Index(list(columns), dtype=object)
    if not rows:
        return pd.DataFrame(np.empty((0, len(cols)), dtype=object), index=index, columns=cols)
    values = np.empty((len(rows), len(cols)), dtype=object)
    for i, row in enumerate(rows):
        values[i, :] = list(row)
    return pd.DataFrame(values, index=index, columns=cols, dtype=object)


def empty_codes(data: pd.DataFrame) -> pd.DataFrame:
    """A `missing_codes` frame with no declared-missing cells.

    Parameters
    ----------
    data : pd.DataFrame
        The data frame to match.

    Returns
    -------
    pd.DataFrame
        Same index and columns, every cell ``None``.
    """
    values = np.full(data.shape, None, dtype=object)
    return pd.DataFrame(values, index=data.index, columns=data.columns, dtype=object)


def python_scalar(value: object) -> object:
    """Convert a value from pandas/numpy into a plain Python value, with missing as ``None``.

    Parameters
    ----------
    value : object
        A cell value from a DataFrame.

    Returns
    -------
    object
        ``None`` for NaN/NaT/NA and blank strings, the numpy scalar's Python equivalent,
        ``pd.Timestamp`` unchanged, anything else unchanged.
    """
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        if isinstance(value, np.floating) and np.isnan(value):
            return None
        if isinstance(value, np.datetime64 | np.timedelta64):
            return None if np.isnat(value) else pd.Timestamp(value)
        return value.item()
    if isinstance(value, str) and not value.strip():
        return None
    return value


def parse_number(value: object) -> float | None:
    """Read a number from a cell that may be text.

    Parameters
    ----------
    value : object
        A cell value.

    Returns
    -------
    float or None
        The number, or ``None`` when the cell is empty or not a number.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    return None if math.isnan(number) else number


def parse_bool(value: object) -> bool | None:
    """Read a yes/no flag written as a bool, 1/0 or true/false.

    Parameters
    ----------
    value : object
        A cell value.

    Returns
    -------
    bool or None
        ``None`` when the cell is empty or not recognisably a flag.
    """
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in {"true", "yes"}:
            return True
        if word in {"false", "no"}:
            return False
    number = parse_number(value)
    if number == 1:
        return True
    if number == 0:
        return False
    return None


# Time zone names as Qualtrics writes them; "Z" and "UTC" are the ones ZoneInfo may not know.
_UTC_NAMES = frozenset({"z", "utc", "gmt", "etc/utc"})
# Text that could be a date: a 4-digit year or d/m/y-style numbers. Anything else ("5",
# "12:30") would make dateutil invent a date from today's, so it is not a time.
_DATE_LIKE = re.compile(r"\d{4}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2}")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2}|\s(?:UTC|GMT))$", re.IGNORECASE)


def _zone(name: str | None) -> dt.tzinfo | None:
    if not name:
        return None
    if name.strip().lower() in _UTC_NAMES:
        return dt.UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        # An unknown zone leaves the time as written rather than failing the whole file.
        return None


def _to_datetime(texts: list[str], *, utc: bool) -> pd.Series:
    """Parse strings: ISO 8601 in one vectorised pass, the rest element by element."""
    series = pd.Series(texts, dtype=object)
    with warnings.catch_warnings():
        # pandas warns when it infers formats element by element or falls back to day-first;
        # both are what we ask for here.
        warnings.simplefilter("ignore", UserWarning)
        out = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=utc)
        bad = out.isna()
        if bad.any():
            out[bad] = pd.to_datetime(series[bad], errors="coerce", format="mixed", utc=utc)
    return out


def parse_timestamps(values: Sequence[object], tz: str | None = None) -> list[pd.Timestamp]:
    """Read a column of submission times as tz-naive `pd.Timestamp` values.

    Parameters
    ----------
    values : Sequence[object]
        Datetime, date or text cells. Numbers are not read as times: a bare number in a date
        column is more likely an error than an epoch.
    tz : str, optional
        IANA zone (or ``"Z"``/``"UTC"``) the file says its times without an offset are in.

    Returns
    -------
    list[pd.Timestamp]
        One per value: tz-naive UTC when the value carries an offset or `tz` is known,
        otherwise the time as written; ``NaT`` when empty or unreadable. ISO 8601 is read
        as such; other text like ``01/02/2024`` month first (pandas' default) unless that is
        impossible.
    """
    result: list[pd.Timestamp] = [pd.NaT] * len(values)
    groups: dict[bool, tuple[list[int], list[str]]] = {False: ([], []), True: ([], [])}
    for i, value in enumerate(values):
        if isinstance(value, dt.datetime | dt.date):
            text = value.isoformat()
        elif isinstance(value, str) and _DATE_LIKE.search(value):
            text = value.strip()
        else:
            continue
        positions, texts = groups[bool(_OFFSET.search(text))]
        positions.append(i)
        texts.append(text)
    zone = _zone(tz)
    for aware, (positions, texts) in groups.items():
        if not texts:
            continue
        try:
            parsed = _to_datetime(texts, utc=aware)
            if aware or parsed.dt.tz is not None:
                parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            elif zone is not None:
                parsed = (
                    parsed.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
                    .dt.tz_convert("UTC")
                    .dt.tz_localize(None)
                )
        except (ValueError, TypeError, OverflowError, AttributeError):
            # Mixed offsets in the "naive" group (say a trailing "UTC") or a zone pandas
            # cannot apply: leave these times unknown rather than fail the file.
            continue
        for i, stamp in zip(positions, parsed.tolist(), strict=True):
            result[i] = pd.NaT if pd.isna(stamp) else pd.Timestamp(stamp)
    return result


def zone_stated(values: Sequence[object], tz: str | None = None) -> np.ndarray:
    """Which times `parse_timestamps` converted to UTC (the value or the file stated a zone).

    Parameters
    ----------
    values : Sequence[object]
        The cells given to `parse_timestamps`.
    tz : str, optional
        The zone given to `parse_timestamps`.

    Returns
    -------
    np.ndarray
        bool, one per value.
    """
    known_zone = _zone(tz) is not None
    out = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if isinstance(value, dt.datetime):
            out[i] = value.tzinfo is not None or known_zone
        elif isinstance(value, str) and _DATE_LIKE.search(value):
            out[i] = bool(_OFFSET.search(value.strip())) or known_zone
        elif isinstance(value, dt.date):
            out[i] = known_zone
    return out


def make_row_meta(
    index: pd.Index,
    *,
    response_id: Sequence[object] | None = None,
    submitted_at: Sequence[pd.Timestamp] | None = None,
    finished: Sequence[bool | None] | None = None,
    is_test: Sequence[bool] | None = None,
    test_reason: Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """Build the `row_meta` frame with its fixed columns and dtypes.

    Parameters
    ----------
    index : pd.Index
        The data frame's index.
    response_id, submitted_at, finished, is_test, test_reason : Sequence, optional
        One value per row; an omitted column gets its "unknown" value (``None``, ``NaT``,
        ``<NA>``, ``False``, ``None``).

    Returns
    -------
    pd.DataFrame
        Columns in `ROW_META_COLUMNS` order.
    """
    n = len(index)
    ids = np.full(n, None, dtype=object)
    if response_id is not None:
        ids[:] = [python_scalar(v) for v in response_id]
    reasons = np.full(n, None, dtype=object)
    if test_reason is not None:
        reasons[:] = list(test_reason)
    return pd.DataFrame(
        {
            "response_id": pd.Series(ids, index=index, dtype=object),
            "submitted_at": pd.Series(
                list(submitted_at) if submitted_at is not None else [pd.NaT] * n,
                index=index,
                dtype="datetime64[ns]",
            ),
            "finished": pd.Series(
                pd.array(list(finished) if finished is not None else [None] * n, "boolean"),
                index=index,
            ),
            "is_test": pd.Series(
                list(is_test) if is_test is not None else [False] * n, index=index, dtype=bool
            ),
            "test_reason": pd.Series(reasons, index=index, dtype=object),
        },
        index=index,
    )


def parsed_from_statistical(
    columns: Sequence[str], values: np.ndarray, codes: np.ndarray, meta: Any,
    value_labels: dict[str, dict[Any, str]],
) -> ParsedTable:
    """Assemble a `ParsedTable` from a pyreadstat read (SPSS or Stata).

    Both formats number cases 1..n (there is no header row) and carry variable labels in the
    pyreadstat metadata; only the missing-value conventions differ, and the callers have
    already turned those into ``codes``.
    """
    return ParsedTable(
        data=frame_from_rows(columns, values.tolist()),
        missing_codes=frame_from_rows(columns, codes.tolist()),
        row_numbers=np.arange(1, len(values) + 1, dtype=np.int64),
        source_columns={c: c for c in columns},
        column_labels={
            str(k): str(v).strip()
            for k, v in (meta.column_names_to_labels or {}).items()
            if v is not None and str(v).strip()
        },
        value_labels=value_labels,
    )
