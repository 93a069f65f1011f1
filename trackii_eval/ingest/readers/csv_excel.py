"""Plain CSV and Excel readers, and the text-grid layer that Qualtrics and KoboToolbox share.

A "grid" is the file as a list of records of text cells; record ``i`` is row ``i + 1`` as the
user sees it. CSV files and worksheets both become grids, so the platform readers interpret
headers the same way whichever container the platform exported.

Cells are kept as text: a survey export that says ``"007"`` or ``"3,5"`` must reach the
validator as written, so it can say exactly which cell is not a valid answer.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import zipfile
from pathlib import Path

import numpy as np

from trackii_eval.ingest.readers.base import (
    ParsedTable,
    assemble_records,
    canonical_text,
    empty_codes,
    frame_from_rows,
    ingest_error,
)

__all__ = [
    "DELIMITERS",
    "Grid",
    "decode_text",
    "header_index",
    "is_legacy_xls",
    "is_workbook",
    "read_csv",
    "read_excel",
    "read_grid",
    "read_plain",
    "sniff_delimiter",
    "text_records",
    "workbook_records",
]

Grid = list[list[str | None]]

DELIMITERS: tuple[str, ...] = (",", ";", "\t")
# How many records after the header the delimiter sniffer compares; enough to outvote one odd
# row, few enough to stay cheap on a large file.
_SNIFF_RECORDS = 20

_ZIP_MAGIC = b"PK\x03\x04"
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    # Qualtrics' TSV export is UTF-16 with a BOM.
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def is_workbook(raw: bytes) -> bool:
    """Whether the bytes are an Office Open XML (zip) container such as .xlsx.

    Parameters
    ----------
    raw : bytes
        File content.

    Returns
    -------
    bool
        True for a zip archive.
    """
    return raw.startswith(_ZIP_MAGIC)


def is_legacy_xls(raw: bytes) -> bool:
    """Whether the bytes are an OLE2 compound file (legacy .xls).

    Parameters
    ----------
    raw : bytes
        File content.

    Returns
    -------
    bool
        True for an OLE2 file.
    """
    return raw.startswith(_OLE2_MAGIC)


def decode_text(raw: bytes, path: Path, encoding: str | None) -> str:
    """Decode a text export, trying UTF-8, then Windows-1252.

    A byte-order mark decides the encoding when present. Without one, UTF-8 is tried first
    because it almost never decodes non-UTF-8 text by accident; Windows-1252 is the fallback
    because Excel's "CSV" on Windows writes it.

    Parameters
    ----------
    raw : bytes
        File content.
    path : Path
        The file, for error messages.
    encoding : str, optional
        Encoding to use instead of detecting one.

    Returns
    -------
    str
        The text.

    Raises
    ------
    IngestError
        If the text cannot be decoded or contains NUL characters (a binary file, or UTF-16
        without a byte-order mark).
    """
    if encoding is not None:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ingest_error(
                path,
                f"cannot be decoded as {encoding} (byte {exc.start})",
                "Pass the file's real encoding, or leave encoding unset to detect it.",
            ) from exc
    else:
        text = _detect_and_decode(raw, path)
    if "\x00" in text:
        raise ingest_error(
            path,
            "contains NUL characters, so it is not a text (CSV) file",
            "Export the data again as CSV (UTF-8), or pass the format of the file.",
        )
    return text


def _detect_and_decode(raw: bytes, path: Path) -> str:
    for bom, name in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(name)
            except UnicodeDecodeError as exc:
                raise ingest_error(
                    path,
                    f"starts with a {name} byte-order mark but is not valid {name} "
                    f"(byte {exc.start})",
                    "Export the data again as CSV (UTF-8).",
                ) from exc
    for name in ("utf-8", "cp1252"):
        try:
            return raw.decode(name)
        except UnicodeDecodeError:
            continue
    raise ingest_error(
        path,
        "is neither UTF-8 nor Windows-1252 text",
        "Export the data again as CSV (UTF-8), or pass encoding= with the file's encoding.",
    )


def _parse(text: str, delimiter: str) -> list[list[str]]:
    # newline="" semantics: the csv module sees "\r\n" and "\r" itself, so line breaks inside
    # quoted cells survive.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"')
    return list(reader)


def _is_blank_any_delimiter(record: list[str] | list[str | None]) -> bool:
    # Under a wrong candidate delimiter a row of empty cells (",,,") is one non-empty cell;
    # looking for the header, such a row must count as blank whichever delimiter is tried.
    return all(c is None or all(ch.isspace() or ch in DELIMITERS for ch in str(c)) for c in record)


def sniff_delimiter(text: str, header_row: int | None = None) -> str:
    """Choose the delimiter among comma, semicolon and tab.

    The winner is the candidate that splits the header into more than one field, then the one
    whose following records most often have the header's field count, then the one giving
    the most header fields; ties go to comma, then semicolon, then tab. The header alone
    decides most files, because column names rarely contain a delimiter while answers (say
    a decimal comma in a semicolon file) often do.

    Parameters
    ----------
    text : str
        Decoded file content.
    header_row : int, optional
        1-based record holding the header; default the first non-blank record.

    Returns
    -------
    str
        The delimiter; comma for a single-column file.
    """
    best: tuple[tuple[bool, float, int], str] | None = None
    for delimiter in DELIMITERS:
        try:
            records = _head(text, delimiter, header_row)
        except csv.Error:
            continue
        index = header_row - 1 if header_row else _first_nonblank(records)
        if index is None or index >= len(records):
            continue
        width = len(records[index])
        following = [r for r in records[index + 1 :] if not _is_blank_any_delimiter(r)]
        share = sum(len(r) == width for r in following) / len(following) if following else 1.0
        score = (width > 1, share, width)
        # Strictly greater, so on a tie the earlier candidate in DELIMITERS keeps the lead.
        if best is None or score > best[0]:
            best = (score, delimiter)
    return best[1] if best is not None else ","


def _head(text: str, delimiter: str, header_row: int | None) -> list[list[str]]:
    """Parse only as far as the sniffer needs: the header and some non-blank records after it."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"')
    out: list[list[str]] = []
    seen = 0
    for record in reader:
        out.append(record)
        if header_row is not None and len(out) < header_row:
            continue
        # Blank lines are not counted, so leading blank lines cannot use up the sample.
        if not _is_blank_any_delimiter(record):
            seen += 1
            if seen > _SNIFF_RECORDS:
                break
    return out


def _first_nonblank(records: list[list[str]] | Grid) -> int | None:
    return next((i for i, r in enumerate(records) if not _is_blank_any_delimiter(r)), None)


def text_records(
    raw: bytes, path: Path, encoding: str | None, header_row: int | None = None
) -> Grid:
    """Decode and split a delimited text file into records.

    Parameters
    ----------
    raw : bytes
        File content.
    path : Path
        The file, for error messages.
    encoding : str, optional
        Forced encoding.
    header_row : int, optional
        1-based header record, used to sniff the delimiter on the right row.

    Returns
    -------
    Grid
        Records of strings.

    Raises
    ------
    IngestError
        If the file cannot be decoded or parsed as CSV.
    """
    text = decode_text(raw, path, encoding)
    delimiter = sniff_delimiter(text, header_row)
    try:
        records = _parse(text, delimiter)
    except csv.Error as exc:
        # csv.Error covers over-long fields (a missing closing quote swallows the rest of the
        # file into one cell) and malformed quoting.
        raise ingest_error(
            path,
            f"cannot be parsed as delimited text ({exc})",
            "Check for an unbalanced double quote, or export the data again as CSV.",
        ) from exc
    complete = text.endswith(("\n", "\r"))
    line = _unclosed_quote_line(text, delimiter)
    if line is not None:
        if not complete:
            raise ingest_error(
                path,
                f"looks truncated: it ends inside a quoted cell opened on line {line}, with no "
                "line break at the end (a copy or download that stopped); rule truncated_file",
                "Copy or download the export again; nothing of this file was ingested.",
            )
        raise ingest_error(
            path,
            f"a double quote opened on line {line} is never closed, so everything after it "
            "would be read as one cell",
            "Close or remove that quote, or export the data again as CSV.",
        )
    if not complete:
        _refuse_short_last_row(path, records, header_row)
    return [list(r) for r in records]


def _refuse_short_last_row(path: Path, records: list[list[str]], header_row: int | None) -> None:
    """A last row without a line break and with fewer fields than the header is a cut file."""
    if header_row is not None and header_row <= len(records):
        header = header_row - 1
    else:
        found = _first_nonblank(records)
        if found is None:
            return
        header = found
    last = next((i for i in range(len(records) - 1, header, -1)
                 if not _is_blank_any_delimiter(records[i])), None)
    if last is None:
        return
    width = len(records[header])
    if len(records[last]) < width:
        raise ingest_error(
            path,
            f"looks truncated: its last row (record {last + 1}) has {len(records[last])} of the "
            f"header's {width} fields and no line break at the end (a copy or download that "
            "stopped); rule truncated_file",
            "Copy or download the export again; if the file is complete, add a line break at "
            "its end. Nothing of this file was ingested.",
        )


def _unclosed_quote_line(text: str, delimiter: str) -> int | None:
    """Physical line where a quoted cell starts that runs to the end of the file, if any.

    The lenient parser above silently swallows the rest of the file into that cell, losing
    rows; strict mode reports it. Strict mode also stops at harmless oddities (a bare quote
    inside an unquoted cell), in which case this check gives up rather than fail the file.
    """
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', strict=True
    )
    line = 0
    try:
        for _ in reader:
            line = reader.line_num
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return line + 1
    return None


def _cell_text(value: object) -> str | None:
    """Render a typed worksheet cell as the text a user sees, so Excel matches CSV."""
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            # Date-formatted cells arrive as midnight datetimes; show them as dates.
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    # numbers, booleans and text take the one canonical form every reader gives (Excel
    # stores every number as a double: an integral 1001.0 is "1001", as in a CSV)
    return canonical_text(value)


def workbook_records(raw: bytes, path: Path, sheet: str | int | None) -> Grid:
    """Read one worksheet of an .xlsx workbook as a grid of text.

    Parameters
    ----------
    raw : bytes
        File content.
    path : Path
        The file, for error messages.
    sheet : str or int, optional
        Sheet name, or 0-based index among worksheets; default the first worksheet.

    Returns
    -------
    Grid
        One record per sheet row from row 1, empty rows included, cells as text.

    Raises
    ------
    IngestError
        If the workbook cannot be opened or the sheet does not exist.
    """
    import openpyxl  # deferred: importing openpyxl costs ~0.3 s and CSV users never need it

    try:
        book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception as exc:
        # openpyxl raises a zoo of exceptions (BadZipFile, KeyError, InvalidFileException,
        # XML errors) on damaged files; each means the same thing to the user.
        raise ingest_error(
            path,
            f"cannot be opened as an Excel workbook ({type(exc).__name__})",
            "Open it in Excel and save it again as .xlsx, or export CSV.",
        ) from exc
    try:
        sheets = book.worksheets
        names = [ws.title for ws in sheets]
        if not sheets:
            raise ingest_error(path, "has no worksheets", "Export the data again.")
        if sheet is None:
            ws = sheets[0]
        elif isinstance(sheet, int):
            if not 0 <= sheet < len(sheets):
                raise ingest_error(
                    path,
                    f"has no sheet at index {sheet} (it has {len(sheets)}: {names})",
                    "Pass a 0-based sheet index or a sheet name.",
                )
            ws = sheets[sheet]
        elif sheet in names:
            ws = sheets[names.index(sheet)]
        else:
            raise ingest_error(
                path, f"has no sheet named {sheet!r} (sheets: {names})", "Pass one of those."
            )
        # Files written by other tools often carry a wrong <dimension>; resetting makes
        # openpyxl read every row that is really there.
        ws.reset_dimensions()
        try:
            grid = [[_cell_text(v) for v in row] for row in ws.iter_rows(values_only=True)]
        except Exception as exc:
            raise ingest_error(
                path,
                f"sheet {ws.title!r} cannot be read ({type(exc).__name__})",
                "Open it in Excel and save it again as .xlsx, or export CSV.",
            ) from exc
        title = ws.title
    finally:
        book.close()
    if _has_formulas(raw):
        _refuse_formulas_without_value(raw, path, title, grid)
    return grid


def _has_formulas(raw: bytes) -> bool:
    """Whether any worksheet of the workbook holds a formula (``<f>`` element)."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for name in archive.namelist():
                if name.startswith("xl/worksheets/") and name.endswith(".xml"):
                    body = archive.read(name)
                    if b"<f>" in body or b"<f " in body or b":f>" in body or b":f " in body:
                        return True
    except (zipfile.BadZipFile, KeyError, OSError):
        return False
    return False


def _refuse_formulas_without_value(raw: bytes, path: Path, title: str, grid: Grid) -> None:
    """Refuse a sheet with a formula cell that has no stored result.

    openpyxl reads the result a spreadsheet program stored with each formula; a file written by
    a script (openpyxl, xlsxwriter, pandas) stores none, and the cell would read as blank, a
    missing answer nobody gave. Such a file is refused with the first such cell.
    """
    import openpyxl

    book = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=False)
    try:
        ws = book[title]
        ws.reset_dimensions()
        for r, row in enumerate(ws.iter_rows(values_only=True)):
            for c, formula in enumerate(row):
                is_formula = (isinstance(formula, str) and formula.startswith("=")) or (
                    formula is not None and type(formula).__name__ in _FORMULA_TYPES)
                value = grid[r][c] if r < len(grid) and c < len(grid[r]) else None
                if is_formula and value is None:
                    from openpyxl.utils import get_column_letter

                    raise ingest_error(
                        path,
                        f"sheet {title!r}, row {r + 1}, column {get_column_letter(c + 1)}: "
                        "a formula without a stored result (the file was written by a program "
                        "that does not calculate formulas), so its value cannot be read; rule "
                        "formula_without_value",
                        "Open the file in Excel or LibreOffice, let it recalculate and save it, "
                        "or export CSV; then ingest again",
                    )
    finally:
        book.close()


_FORMULA_TYPES = frozenset({"ArrayFormula", "DataTableFormula"})


def read_grid(
    raw: bytes,
    path: Path,
    *,
    sheet: str | int | None,
    encoding: str | None,
    header_row: int | None = None,
) -> Grid:
    """Read a CSV or .xlsx file as a grid, whichever the bytes are.

    Parameters
    ----------
    raw : bytes
        File content.
    path : Path
        The file.
    sheet : str or int, optional
        Worksheet, for workbooks only.
    encoding : str, optional
        Text encoding, for text files only.
    header_row : int, optional
        1-based header row, used to sniff a CSV delimiter.

    Returns
    -------
    Grid
        The records.

    Raises
    ------
    IngestError
        If the file is a legacy .xls, or an option does not apply to the file's kind.
    """
    if is_legacy_xls(raw):
        raise ingest_error(
            path,
            "is a legacy Excel 97-2003 (.xls) workbook, which openpyxl cannot read",
            "Open it in Excel and save it as .xlsx (Excel Workbook), or export CSV.",
        )
    if is_workbook(raw):
        if encoding is not None:
            raise ingest_error(
                path,
                "is an Excel workbook, so encoding= does not apply",
                "Remove the encoding option for this file.",
            )
        return workbook_records(raw, path, sheet)
    if sheet is not None:
        raise ingest_error(
            path,
            "is a text file, not an Excel workbook, so sheet= does not apply",
            "Remove the sheet option for this file, or point it at the .xlsx export.",
        )
    return text_records(raw, path, encoding, header_row)


def header_index(path: Path, records: Grid, header_row: int | None) -> int:
    """Find the header record: `header_row` if given, else the first non-blank record.

    Parameters
    ----------
    path : Path
        The file, for error messages.
    records : Grid
        The grid.
    header_row : int, optional
        1-based row number of the header.

    Returns
    -------
    int
        0-based record index.

    Raises
    ------
    IngestError
        If the file has no non-blank record or fewer rows than `header_row`.
    """
    if header_row is not None:
        if header_row > len(records):
            raise ingest_error(
                path,
                f"has {len(records)} rows, so there is no header on row {header_row}",
                "Point header_row at the row with the column names.",
            )
        return header_row - 1
    index = _first_nonblank(records)
    if index is None:
        raise ingest_error(
            path, "has no header row: it is empty or blank", "Export the data again."
        )
    return index


def read_plain(path: Path, records: Grid, header_row: int | None) -> ParsedTable:
    """Read a grid with one header row and no platform conventions (plain CSV or Excel).

    Parameters
    ----------
    path : Path
        The file, for error messages.
    records : Grid
        Its records.
    header_row : int, optional
        1-based row of the column names; default the first non-blank row.

    Returns
    -------
    ParsedTable
        Cells as text, empty cells ``None``.
    """
    index = header_index(path, records, header_row)
    table = assemble_records(path, records, index, index + 1)
    data = frame_from_rows(table.columns, table.rows)
    return ParsedTable(
        data=data,
        missing_codes=empty_codes(data),
        row_numbers=np.asarray(table.row_numbers, dtype=np.int64),
        source_columns={c: c for c in table.columns},
    )


def read_csv(
    raw: bytes, path: Path, *, header_row: int | None, encoding: str | None
) -> ParsedTable:
    """Read a delimited text file with one header row.

    Parameters
    ----------
    raw : bytes
        File content.
    path : Path
        The file.
    header_row : int, optional
        1-based row of the column names; default the first non-blank row. Rows above it
        are ignored.
    encoding : str, optional
        Forced encoding; default detected (BOM, UTF-8, Windows-1252).

    Returns
    -------
    ParsedTable
        Cells as stripped strings, empty cells ``None``.
    """
    if is_workbook(raw) or is_legacy_xls(raw):
        raise ingest_error(
            path,
            "is an Excel workbook, not CSV text",
            "Read it with format='excel' (or leave format unset).",
        )
    return read_plain(path, text_records(raw, path, encoding, header_row), header_row)


def read_excel(
    raw: bytes, path: Path, *, sheet: str | int | None, header_row: int | None
) -> ParsedTable:
    """Read one worksheet of an .xlsx workbook with one header row.

    Parameters
    ----------
    raw : bytes
        File content.
    path : Path
        The file.
    sheet : str or int, optional
        Sheet name or 0-based index; default the first worksheet.
    header_row : int, optional
        1-based sheet row of the column names; default the first non-blank row.

    Returns
    -------
    ParsedTable
        Cells rendered as text (numbers without a trailing ``.0``, dates as ISO 8601,
        booleans as ``TRUE``/``FALSE``), empty cells ``None``; row numbers are sheet rows.
    """
    if is_legacy_xls(raw):
        return read_plain(path, read_grid(raw, path, sheet=sheet, encoding=None), header_row)
    if not is_workbook(raw):
        raise ingest_error(
            path,
            "is not an Excel .xlsx workbook",
            "Read it with format='csv' (or leave format unset), or save it as .xlsx.",
        )
    return read_plain(path, workbook_records(raw, path, sheet), header_row)
