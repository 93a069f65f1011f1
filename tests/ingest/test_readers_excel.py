"""Excel: formula cells without a stored result refuse the file; a header below row 1 gets a
``header_row:`` suggestion (issue 8)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import openpyxl
import pytest

from trackii_eval import Study
from trackii_eval.errors import IngestError
from trackii_eval.ingest.readers import read_table

from .mini_study import make_study

CASE = Path(__file__).parent / "cases" / "excel-formula-without-result" / "wave1.xlsx"


def test_case_formula_without_result_refused(tmp_path: Path, key) -> None:
    with pytest.raises(IngestError) as info:
        read_table(CASE)
    message = str(info.value)
    assert "wave1.xlsx" in message and "row 2, column H" in message
    assert "formula without a stored result" in message and "save it" in message
    root = make_study(tmp_path / "s", [(CASE, "2022-03-01")])
    study = Study.load(root, out=tmp_path / "out")
    with pytest.raises(IngestError, match="formula_without_value"):
        study.ingest(key)
    assert study.store.query("SELECT count(*) AS n FROM responses")["n"][0] == 0
    study.close()


def test_formula_written_by_openpyxl_is_refused_at_its_cell(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["pid", "t1", "t2"])
    ws.append(["A1", 1, 2])
    ws.append(["A2", 3, "=B3+1"])
    path = tmp_path / "f.xlsx"
    book.save(path)
    with pytest.raises(IngestError, match=r"row 3, column C"):
        read_table(path)


def test_formula_with_stored_result_is_read(tmp_path: Path) -> None:
    """The same case, saved by a program that stores results: values are read, not refused."""
    src = zipfile.ZipFile(CASE)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                body = body.replace(b"<v />", b"<v>2</v>")
            dst.writestr(item, body)
    path = tmp_path / "computed.xlsx"
    path.write_bytes(out.getvalue())
    raw = read_table(path)
    assert set(raw.data["t3"]) == {"2"}


def test_header_not_on_row_1_suggests_header_row(tmp_path: Path, key) -> None:
    book = openpyxl.Workbook()
    ws = book.active
    ws.append(["Survey export, wave 1"])
    ws.append([])
    ws.append(["pid", "arm", "t1", "t2", "t3"])
    ws.append(["A1", "comparison", 1, 2, 3])
    path = tmp_path / "titled.xlsx"
    book.save(path)
    root = make_study(tmp_path / "s", [(path, "2022-03-01")])
    study = Study.load(root, out=tmp_path / "out")
    with pytest.raises(IngestError) as info:
        study.ingest(key)
    assert "header_row: 3" in str(info.value)
    study.close()
    # and with the suggestion followed, the file ingests
    text = (root / "study.yaml").read_text().replace("file: titled.xlsx",
                                                      "file: titled.xlsx, header_row: 3")
    (root / "study.yaml").write_text(text)
    study = Study.load(root, out=tmp_path / "out2")
    assert study.ingest(key).table["rows_stored"].tolist() == [1]
    study.close()


def test_cli_refusal_is_one_line_exit_3(tmp_path: Path, key_file: Path) -> None:
    from typer.testing import CliRunner

    from trackii_eval.cli import app

    root = make_study(tmp_path / "s", [(CASE, "2022-03-01")])
    result = CliRunner().invoke(app, ["ingest", str(root), "--out", str(tmp_path / "o"),
                                      "--key-file", str(key_file)])
    assert result.exit_code == 3
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    assert "wave1.xlsx" in lines[0] and "row 2, column H" in lines[0]
    assert "formula_without_value" in lines[0]
