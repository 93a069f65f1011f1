"""Property tests: messy CSV either reads with the right row count or fails as IngestError."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trackii_eval.errors import IngestError
from trackii_eval.ingest.readers import RawTable, read_table
from trackii_eval.ingest.readers.csv_excel import sniff_delimiter

# Example counts keep the whole file to a few seconds on a 2-core machine; CI runs it on
# every push, so coverage accumulates across runs.
SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FEW = settings(SETTINGS, max_examples=50)

# Characters that make CSV hard: quotes, every candidate delimiter, every kind of line break,
# padding, and text that is not ASCII.
NASTY = ['"', '""', ",", ";", "\t", "\n", "\r\n", "\r", " ", "  ", 'a"b', "é", "€", "“x”"]
CP1252_SAFE = st.characters(codec="cp1252", exclude_categories=("Cs",), exclude_characters="\x00")
ANY_TEXT = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
HEADER_NAME = st.from_regex(r"[a-z][a-z0-9_ ]{0,8}[a-z0-9]", fullmatch=True)


@contextmanager
def _file(content: bytes, suffix: str = ".csv") -> Iterator[Path]:
    # A fresh directory per example: pytest's tmp_path is shared by all of hypothesis' runs.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"wave{suffix}"
        path.write_bytes(content)
        yield path


def _check_consistent(raw: RawTable) -> None:
    n = raw.n_rows
    assert len(raw.data) == len(raw.row_numbers) == len(raw.row_meta) == n
    assert raw.missing_codes.shape == raw.data.shape
    assert all(raw.data[c].dtype == object for c in raw.data.columns)
    assert len(set(raw.data.columns)) == raw.data.shape[1]
    assert all(r >= 2 for r in raw.row_numbers.tolist())


@st.composite
def messy_csv(draw: st.DrawFn) -> tuple[bytes, str, int, list[list[str]], list[int]]:
    """A CSV file as some tool might write it, with the records it holds."""
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    alphabet = CP1252_SAFE if encoding == "cp1252" else ANY_TEXT
    cell = st.one_of(st.sampled_from(NASTY), st.text(alphabet, max_size=8))
    if encoding == "cp1252":
        cell = cell.filter(lambda s: _encodable(s, "cp1252"))
    header = draw(st.lists(HEADER_NAME, min_size=2, max_size=5, unique=True))
    # Ragged rows: any length up to the header's (a short row is padded with empty cells).
    rows = draw(st.lists(st.lists(cell, max_size=len(header)), max_size=12))
    leading_blank = draw(st.integers(0, 2))
    buffer = io.StringIO()
    buffer.write("\r\n" * leading_blank)
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    text = buffer.getvalue()
    expected_rows = [r for r in rows if any(c.strip() for c in r)]
    first_data = leading_blank + 2
    expected_numbers = [first_data + i for i, r in enumerate(rows) if any(c.strip() for c in r)]
    return text.encode(encoding), text, len(header), expected_rows, expected_numbers


def _encodable(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


@SETTINGS
@given(messy_csv())
def test_messy_but_valid_csv_reads_every_record(
    case: tuple[bytes, str, int, list[list[str]], list[int]],
) -> None:
    """Every non-blank record comes back once, with its row number and its stripped cells."""
    content, text, width, expected_rows, expected_numbers = case
    with _file(content) as path:
        raw = read_table(path)
    _check_consistent(raw)
    assert raw.format == "csv"
    assert raw.n_rows == len(expected_rows)
    assert raw.row_numbers.tolist() == expected_numbers
    assert raw.data.shape[1] == width
    try:
        as_utf8 = content.decode("utf-8")
    except UnicodeDecodeError:
        as_utf8 = None
    # Windows-1252 bytes that also happen to be valid UTF-8 are (rightly) read as UTF-8, so
    # the cells only match the written text when decoding was unambiguous.
    if content.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")) or as_utf8 in (None, text):
        for got, row in zip(raw.data.itertuples(index=False), expected_rows, strict=True):
            want = [c.strip() or None for c in row] + [None] * (width - len(row))
            assert list(got) == want


@st.composite
def ragged_text(draw: st.DrawFn) -> str:
    """Delimited text with rows longer and shorter than the header and stray quotes."""
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    header = draw(st.lists(HEADER_NAME, min_size=1, max_size=4, unique=True))
    cell = st.one_of(st.sampled_from(NASTY), st.text(ANY_TEXT, max_size=6))
    rows = draw(st.lists(st.lists(cell, max_size=len(header) + 2), max_size=10))
    lines = [delimiter.join(header)]
    for row in rows:
        # Written by hand, not by csv.writer, so quotes can be unbalanced.
        lines.append(delimiter.join(row))
    return draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines)


def _data_records(text: str) -> int:
    """Non-blank records after the first non-blank one, as the csv module splits them."""
    delimiter = sniff_delimiter(text)
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    non_blank = [r for r in records if any(c.strip() for c in r)]
    return max(len(non_blank) - 1, 0)


@SETTINGS
@given(ragged_text())
def test_ragged_text_reads_or_raises_ingest_error(text: str) -> None:
    with _file(text.encode("utf-8")) as path:
        try:
            raw = read_table(path, format="csv")
        except IngestError as exc:
            assert str(path) in str(exc)
            return
    _check_consistent(raw)
    assert raw.n_rows == _data_records(text)


@FEW
@given(st.binary(max_size=400), st.sampled_from([None, "csv"]))
def test_random_bytes_never_escape_as_anything_but_ingest_error(
    content: bytes, fmt: str | None
) -> None:
    with _file(content) as path:
        try:
            raw = read_table(path, format=fmt)  # type: ignore[arg-type]
        except IngestError as exc:
            assert str(path) in str(exc)
            return
    _check_consistent(raw)


@FEW
@given(
    st.sampled_from([b"$FL2", b"<stata_dta>", b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"]),
    st.binary(max_size=200),
)
def test_truncated_binary_containers_raise_ingest_error(magic: bytes, tail: bytes) -> None:
    with _file(magic + tail, suffix=".dat") as path, pytest.raises(IngestError):
        read_table(path)
