"""Read one survey wave file, whatever produced it, into a `RawTable`.

>>> raw = read_table("wave1_qualtrics.csv")  # doctest: +SKIP
>>> raw.format, raw.n_rows, raw.row_numbers[:2]  # doctest: +SKIP
('qualtrics', 42, array([4, 5]))

Supported: CSV (comma, semicolon or tab; UTF-8, UTF-8 with BOM, UTF-16 with BOM or
Windows-1252), Excel .xlsx, SPSS .sav/.zsav, Stata .dta, Qualtrics CSV/XLSX exports and
KoboToolbox CSV/XLSX exports. Validation (types, ranges, unknown items) happens downstream;
readers only report problems with the file as a whole, as `IngestError`.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trackii_eval.ingest.readers import kobo, qualtrics
from trackii_eval.ingest.readers.base import (
    FORMATS,
    FormatName,
    ParsedTable,
    RawTable,
    ingest_error,
    make_row_meta,
    parse_timestamps,
    zone_stated,
)
from trackii_eval.ingest.readers.csv_excel import (
    Grid,
    header_index,
    is_legacy_xls,
    is_workbook,
    read_csv,
    read_excel,
    read_grid,
    read_plain,
)
from trackii_eval.ingest.readers.spss import read_spss
from trackii_eval.ingest.readers.stata import read_stata

__all__ = ["FORMATS", "FormatName", "RawTable", "detect_format", "read_table", "read_wave"]

_SPSS_MAGIC = (b"$FL2", b"$FL3")
_STATA_XML_MAGIC = b"<stata_dta>"
_SPSS_SUFFIXES = frozenset({".sav", ".zsav"})
_STATA_SUFFIXES = frozenset({".dta"})
_EXCEL_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xls"})
# Direct identifiers whatever the platform: names only Qualtrics uses, unambiguous anywhere.
_ALWAYS_IDENTIFIERS = frozenset(
    {
        "IPAddress",
        "RecipientEmail",
        "RecipientFirstName",
        "RecipientLastName",
        "LocationLatitude",
        "LocationLongitude",
    }
)
_GENERIC_TIME_COLUMNS = ("submitted_at", "date")


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ingest_error(path, "does not exist", "Check the path in the study config.") from exc
    except IsADirectoryError as exc:
        raise ingest_error(path, "is a directory", "Point at the export file itself.") from exc
    except OSError as exc:
        raise ingest_error(
            path,
            f"cannot be read ({exc.strerror or type(exc).__name__})",
            "Check that the file exists and that you may read it.",
        ) from exc
    if not raw:
        raise ingest_error(path, "is empty (0 bytes)", "Export the data again.")
    return raw


def _is_old_stata(raw: bytes) -> bool:
    # Stata 5-13 (formats 104-115): version byte, byte order 1 or 2, filetype 1.
    return len(raw) > 3 and 104 <= raw[0] <= 115 and raw[1] in (1, 2) and raw[2] == 1


def _sniff(
    raw: bytes,
    path: Path,
    *,
    sheet: str | int | None,
    header_row: int | None,
    encoding: str | None,
) -> tuple[FormatName, Grid | None]:
    """Decide the format from the bytes first and the suffix second.

    Returns the grid too when one had to be read to decide, so it is not parsed twice.
    """
    if raw.startswith(_SPSS_MAGIC):
        return "spss", None
    suffix = path.suffix.lower()
    if raw.startswith(_STATA_XML_MAGIC) or (suffix in _STATA_SUFFIXES and _is_old_stata(raw)):
        return "stata", None
    # A binary suffix on bytes that match no binary format is a damaged or misnamed file;
    # the reader for that suffix gives the clearest message.
    if suffix in _SPSS_SUFFIXES:
        return "spss", None
    if suffix in _STATA_SUFFIXES:
        return "stata", None
    if is_legacy_xls(raw) or (suffix in _EXCEL_SUFFIXES and not is_workbook(raw)):
        return "excel", None
    records = read_grid(raw, path, sheet=sheet, encoding=encoding, header_row=header_row)
    header = header_index(path, records, header_row)
    if qualtrics.find_layout(records, header) is not None:
        return "qualtrics", records
    names = [str(c).strip() for c in records[header] if c is not None]
    if kobo.looks_like(names):
        return "kobo", records
    return ("excel" if is_workbook(raw) else "csv"), records


def detect_format(path: str | os.PathLike[str]) -> FormatName:
    """Guess a wave file's format from its content, then its suffix.

    SPSS and Stata files are recognised by their magic bytes; .xlsx and text files by their
    first rows: a Qualtrics ImportId row (or legacy ``V1``/``ResponseID`` header, or
    ``ResponseId`` with a Qualtrics timestamp column) means ``"qualtrics"``; a ``_uuid`` or
    ``_submission_time`` column means ``"kobo"``; otherwise ``"excel"`` or ``"csv"``.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    FormatName
        One of ``"csv"``, ``"excel"``, ``"spss"``, ``"stata"``, ``"qualtrics"``, ``"kobo"``.

    Raises
    ------
    IngestError
        If the file cannot be read or, for text, decoded.
    """
    file = Path(path)
    return _sniff(_read_bytes(file), file, sheet=None, header_row=None, encoding=None)[0]


def _check_options(
    file: Path,
    fmt: FormatName,
    raw: bytes,
    sheet: str | int | None,
    header_row: int | None,
) -> None:
    if fmt in ("spss", "stata"):
        for option, value in (("sheet", sheet), ("header_row", header_row)):
            if value is not None:
                raise ingest_error(
                    file,
                    f"is read as {fmt}, which has no {option}",
                    f"Remove the {option} option for this file.",
                )
    if fmt == "csv" and sheet is not None and not is_workbook(raw):
        raise ingest_error(
            file,
            "is a text file, not an Excel workbook, so sheet= does not apply",
            "Remove the sheet option for this file.",
        )


def _parse(
    raw: bytes,
    file: Path,
    fmt: FormatName,
    records: Grid | None,
    *,
    sheet: str | int | None,
    header_row: int | None,
    encoding: str | None,
) -> ParsedTable:
    if fmt == "spss":
        return read_spss(raw, file, encoding=encoding)
    if fmt == "stata":
        return read_stata(raw, file, encoding=encoding)
    if fmt == "csv":
        if records is None:
            return read_csv(raw, file, header_row=header_row, encoding=encoding)
        return read_plain(file, records, header_row)
    if fmt == "excel":
        if encoding is not None:
            raise ingest_error(
                file,
                "is read as an Excel workbook, so encoding= does not apply",
                "Remove the encoding option for this file.",
            )
        if records is None:
            return read_excel(raw, file, sheet=sheet, header_row=header_row)
        return read_plain(file, records, header_row)
    if records is None:
        records = read_grid(raw, file, sheet=sheet, encoding=encoding, header_row=header_row)
    if fmt == "qualtrics":
        return qualtrics.read_qualtrics(file, records, header_row)
    return kobo.read_kobo(file, records, header_row)


def _generic_row_meta(table: ParsedTable) -> pd.DataFrame:
    lowered = {str(c).lower(): c for c in table.data.columns}
    time_name = next((lowered[n] for n in _GENERIC_TIME_COLUMNS if n in lowered), None)
    submitted = parse_timestamps(table.data[time_name].tolist()) if time_name else None
    return make_row_meta(table.data.index, submitted_at=submitted)


def _finish(file: Path, fmt: FormatName, raw: bytes, table: ParsedTable) -> RawTable:
    """Apply the platform's conventions (which may differ from the file format's)."""
    columns = [str(c) for c in table.data.columns]
    # SPSS and Stata files carry no platform layout of their own, so a Qualtrics or Kobo
    # export saved in them is recognised by its columns. A CSV or workbook forced to "csv" or
    # "excel" is read plain, as asked.
    by_columns = fmt in ("spss", "stata")
    stated = _zone_flags(table, fmt, columns, by_columns)
    if fmt == "qualtrics" or (by_columns and qualtrics.looks_like(columns)):
        legacy = table.qualtrics_legacy
        row_meta = qualtrics.row_meta(table)
        metadata = qualtrics.metadata_columns(columns, legacy=legacy)
        identifiers = qualtrics.identifier_columns(columns, legacy=legacy)
    elif fmt == "kobo" or (by_columns and kobo.looks_like(columns)):
        row_meta = kobo.row_meta(table)
        metadata = kobo.metadata_columns(columns, table.source_columns)
        identifiers = kobo.identifier_columns(columns)
    else:
        row_meta = _generic_row_meta(table)
        metadata = frozenset()
        identifiers = frozenset()
    identifiers |= frozenset(c for c in columns if c in _ALWAYS_IDENTIFIERS)
    return RawTable(
        path=file,
        format=fmt,
        sha256=hashlib.sha256(raw).hexdigest(),
        data=table.data,
        missing_codes=table.missing_codes,
        row_numbers=table.row_numbers,
        source_columns=table.source_columns,
        column_labels=table.column_labels,
        value_labels=table.value_labels,
        row_meta=row_meta,
        metadata_columns=metadata,
        identifier_columns=identifiers,
        submitted_utc=stated,
    )


def _zone_flags(table: ParsedTable, fmt: FormatName, columns: list[str], by_columns: bool
                ) -> np.ndarray:
    """Per row: whether row_meta's submitted_at was converted to UTC (mirrors the row_meta
    builders: Qualtrics EndDate/RecordedDate with the ImportId zone, Kobo _submission_time in
    UTC, else the generic submitted_at/date column)."""
    data = table.data
    if fmt == "qualtrics" or (by_columns and qualtrics.looks_like(columns)):
        name = next((c for c in ("EndDate", "RecordedDate") if c in data.columns), None)
        zone = table.time_zones.get(name) if name else None
    elif fmt == "kobo" or (by_columns and kobo.looks_like(columns)):
        name = "_submission_time" if "_submission_time" in data.columns else None
        zone = "UTC"
    else:
        lowered = {str(c).lower(): c for c in data.columns}
        name = next((lowered[n] for n in _GENERIC_TIME_COLUMNS if n in lowered), None)
        zone = None
    if name is None:
        return np.zeros(len(data), dtype=bool)
    return zone_stated(data[name].tolist(), zone)


def read_table(
    path: str | os.PathLike[str],
    *,
    format: FormatName | None = None,
    sheet: str | int | None = None,
    header_row: int | None = None,
    encoding: str | None = None,
) -> RawTable:
    """Read one wave file into a `RawTable`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    format : {"csv", "excel", "spss", "stata", "qualtrics", "kobo"}, optional
        Force a reader; default `detect_format`. Forcing ``"csv"`` on a Qualtrics export
        reads its extra header rows as data, as asked.
    sheet : str or int, optional
        Worksheet name or 0-based index, for .xlsx files (Excel, Qualtrics or Kobo);
        default the first worksheet.
    header_row : int, optional
        1-based row of the column names (for Qualtrics, the first of its header rows) in
        CSV/Excel/Qualtrics/Kobo files; rows above it are ignored. Default the first
        non-blank row.
    encoding : str, optional
        Text encoding of a CSV export, or the string encoding of an SPSS/Stata file;
        default detected.

    Returns
    -------
    RawTable
        The file's data, labels, missing codes and row metadata.

    Raises
    ------
    IngestError
        If the file cannot be read, is empty, cannot be decoded, has no usable header, or
        an option does not apply to it. The message names the file and the fix and never
        contains a cell value.
    ValueError
        If `format` is not a known format or `header_row` is not a positive integer.
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} or None, not {format!r}")
    if header_row is not None and (
        isinstance(header_row, bool) or not isinstance(header_row, int) or header_row < 1
    ):
        raise ValueError(f"header_row must be a positive 1-based row number, not {header_row!r}")
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {encoding!r}") from exc
    file = Path(path)
    raw = _read_bytes(file)
    records: Grid | None = None
    if format is None:
        fmt, records = _sniff(raw, file, sheet=sheet, header_row=header_row, encoding=encoding)
    else:
        fmt = format
    _check_options(file, fmt, raw, sheet, header_row)
    table = _parse(raw, file, fmt, records, sheet=sheet, header_row=header_row, encoding=encoding)
    return _finish(file, fmt, raw, table)


def read_wave(root: str | os.PathLike[str], wave: Any) -> RawTable:
    """Read one wave's file with every reading option the study declares for it.

    Parameters
    ----------
    root : str or os.PathLike
        The study folder (wave files are relative to it).
    wave : trackii_eval.config.Wave
        The wave: ``file``, ``format``, ``sheet``, ``header_row``, ``encoding``.

    Returns
    -------
    RawTable
        As `read_table`.

    Raises
    ------
    IngestError
        As `read_table`.
    """
    return read_table(Path(root) / wave.file, format=wave.format, sheet=wave.sheet,
                      header_row=wave.header_row, encoding=getattr(wave, "encoding", None))
