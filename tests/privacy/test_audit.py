"""`trackii-eval audit`: finds a planted identifier in every encoding and a planted small cell,
never prints the identifier, and passes the demo's own outputs."""

from __future__ import annotations

import base64
import hashlib
import html
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from trackii_eval.cli import app
from trackii_eval.privacy.audit import audit_path, build_needles

from ..conftest import DEMO

FIRST = pd.read_csv(DEMO / "waves" / "wave1_baseline.csv", dtype=str, keep_default_na=False
                    ).iloc[0]
CODE, EMAIL, NAME, SGIC = FIRST["participant_code"], FIRST["email"], FIRST["name"], FIRST["sgic"]
LATITUDE = FIRST["latitude"]


def _b64_embedded(value: str, pad: int, urlsafe: bool = False) -> str:
    payload = ("x" * pad + '{"participant": "' + value + '", "note": "export"}').encode()
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return "data:application/json;base64," + encode(payload).decode()


# (file name, text planted, source column, expected kind, expected words in the detail)
PLANTED = [
    ("plain.html", f"<td>{CODE}</td>", "participant_code", "identifier", "plain"),
    ("lower.txt", f"id={CODE.lower()}", "participant_code", "identifier", "plain"),
    ("compact.csv", "1," + CODE.replace("-", "") + ",2", "participant_code", "identifier",
     "plain"),
    ("spaced.md", "code " + CODE.replace("-", " - ") + " seen", "participant_code",
     "identifier", "plain"),
    ("url.html", '<a href="mailto:?to=' + urllib.parse.quote(EMAIL, safe="") + '">x</a>',
     "email", "identifier", "URL-escaped"),
    ("url_plus.txt", "q=" + urllib.parse.quote_plus(NAME), "name", "identifier",
     "URL-escaped"),
    ("html_dec.html", "<p>" + "".join(f"&#{ord(c)};" for c in EMAIL) + "</p>", "email",
     "identifier", "HTML-escaped"),
    ("html_hex.html", "<p>" + "".join(f"&#x{ord(c):x};" for c in SGIC) + "</p>", "sgic",
     "identifier", "HTML-escaped"),
    ("json.json", '{"who": "' + "".join(f"\\u{ord(c):04x}" for c in CODE) + '"}',
     "participant_code", "identifier", "JSON-escaped"),
    ("b64_0.html", f'<img src="{_b64_embedded(CODE, 0)}">', "participant_code", "identifier",
     "base64"),
    ("b64_1.html", f'<img src="{_b64_embedded(CODE, 1)}">', "participant_code", "identifier",
     "base64"),
    ("b64_2.html", f'<img src="{_b64_embedded(EMAIL, 2)}">', "email", "identifier", "base64"),
    ("b64_url.txt", _b64_embedded(NAME, 1, urlsafe=True), "name", "identifier", "base64"),
    ("sha256.csv", "1," + hashlib.sha256(CODE.encode()).hexdigest() + ",2",
     "participant_code", "sha256", "SHA256 hex"),
    ("sha256_upper.json", '{"h": "' + hashlib.sha256(CODE.lower().encode()).hexdigest().upper()
     + '"}', "participant_code", "sha256", "SHA256 hex"),
    ("sha256_trunc.txt", "P-" + hashlib.sha256(SGIC.encode()).hexdigest()[:16], "sgic",
     "sha256", "truncated"),
    ("md5.txt", "md5 " + hashlib.md5(EMAIL.encode()).hexdigest(), "email", "md5", "MD5 hex"),
    ("sha1.txt", hashlib.sha1(EMAIL.upper().encode()).hexdigest(), "email", "sha1", "SHA1 hex"),
    ("latitude.txt", f"lat {LATITUDE} lon", "latitude", "identifier", "plain"),
]


def _forms(value: str) -> list[str]:
    return [value, value.lower(), value.upper(), value.replace("-", ""),
            urllib.parse.quote(value, safe=""), html.escape(value)]


@pytest.mark.parametrize(("name", "text", "column", "kind", "encoding"), PLANTED,
                         ids=[p[0] for p in PLANTED])
def test_planted_leak_is_found_in_every_encoding(demo_needles, tmp_path: Path, name: str,
                                                 text: str, column: str, kind: str,
                                                 encoding: str) -> None:
    (tmp_path / "clean.txt").write_text("nothing to see: P-0123456789abcdef 12.5\n")
    (tmp_path / name).write_text("header line\nbefore " + text + " after\n", encoding="utf-8")
    result = audit_path(tmp_path, demo_needles)
    assert result.findings, name
    assert {f.file for f in result.findings} == {name}
    assert any(f.kind == kind and f"column '{column}'" in f.detail and encoding in f.detail
               and f.line == 2 for f in result.findings), result.lines()
    printed = "\n".join(result.lines())
    for value in (CODE, EMAIL, NAME, SGIC, LATITUDE):
        for form in _forms(value):
            assert form not in printed


def test_no_false_positive_on_near_misses(demo_needles, tmp_path: Path) -> None:
    # a longer number containing a coordinate, pseudonyms, digests of other text, base64 images
    text = "\n".join([
        f"estimate {LATITUDE}12 and 9{LATITUDE.lstrip('-')}",
        "P-3f9a0c61d2b7e845 P-0000000000000000",
        hashlib.sha256(b"CNRY-9999-XXXX").hexdigest(),
        "data:image/png;base64," + base64.b64encode(bytes(range(256)) * 8).decode(),
        "participants respondents interpretation",
    ])
    (tmp_path / "report.html").write_text(text)
    result = audit_path(tmp_path, demo_needles)
    assert result.findings == [], result.lines()


def test_small_cell_in_a_published_table(tmp_path: Path) -> None:
    pd.DataFrame({"wave": [1, 2, 3], "arm": ["a", "a", "b"], "n": [12, 3, 40],
                  "n_items": [2, 2, 2], "mean": [1.5, 2.0, 3.0]}).to_csv(
        tmp_path / "table.csv", index=False)
    pd.DataFrame({"group": ["x", "y"], "respondents": ["25", "0"], "linked_count": [7, 4]}
                 ).to_csv(tmp_path / "other.csv", index=False)
    result = audit_path(tmp_path, None, k=5)
    assert [str(f) for f in result.findings] == [
        "other.csv:3: small-cell: column 'linked_count' counts fewer than k=5 people",
        "table.csv:3: small-cell: column 'n' counts fewer than k=5 people",
    ]
    assert audit_path(tmp_path, None, k=3).findings == []  # 3 and 4 are not below 3


def test_unreadable_files_are_listed_not_passed(tmp_path: Path) -> None:
    (tmp_path / "figure.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "export.enc").write_bytes(b"TRACKII-EVAL-ENCRYPTED\n{}\nxyz")
    result = audit_path(tmp_path, build_needles({"code": ["ABCDEF-1234"]}))
    assert result.findings == []
    assert len(result.notes) == 2 and all("not scanned" in n for n in result.notes)


# The demo report as rendered before the disclosure-control step: the provenance table shows
# "quarantined 2" and "3", and the linkage table hides one part of a row whose total is shown
# (147 - 132 - 13 = 2 behind "<5"). The issue names these; the disclosure step removes them.

def test_demo_outputs_pass_the_audit(demo_outputs: Path, demo_needles) -> None:
    names = {p.name for p in demo_outputs.iterdir()}
    assert {"report.html", "demo.duckdb", "linkage_review.csv"} <= names
    assert demo_needles.n_values > 3000  # codes, SGICs, names, e-mails, phones, IPs, locations
    result = audit_path(demo_outputs, demo_needles, k=5)
    # the report goes through joint disclosure control: no identifier, no small cell and no
    # cell recoverable from the tables' totals anywhere in the outputs
    assert result.findings == [], result.lines()
    assert result.notes == []
    assert "demo.duckdb" in result.files_scanned


def test_html_tables_small_and_recoverable_cells(tmp_path: Path) -> None:
    def table(rows: list[list[str]]) -> str:
        head = "".join(f"<th>{c}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    header = ["wave", "records", "exact", "fuzzy", "ambiguous"]
    leaky = table([header, ["1", "230", "200", "30", "0"], ["2", "202", "170", "32", "0"],
                   ["4", "147", "132", "13", "&lt;5"]])
    protected = table([header, ["1", "230", "200", "30", "0"], ["2", "202", "170", "32", "0"],
                       ["4", "147", "132", "&lt;15", "&lt;5"]])
    small = table([["arm", "n", "mean"], ["comparison", "116", "51.0"], ["dialogue", "3", "4"]])
    (tmp_path / "leaky.html").write_text(f"<html><body>{leaky}{small}</body></html>")
    (tmp_path / "protected.html").write_text(f"<html><body>{protected}</body></html>")
    result = audit_path(tmp_path, None, k=5)
    assert [str(f) for f in result.findings] == [
        "leaky.html: recoverable-cell: table 1, row 3: column 'ambiguous': the suppressed count "
        "follows from 'records' = sum of 'exact', 'fuzzy', 'ambiguous' (shown rows)",
        "leaky.html: small-cell: table 2, row 2: column 'n' counts fewer than k=5 people",
    ]


def test_store_table_leak_is_found(demo_outputs: Path, demo_needles) -> None:
    import duckdb

    con = duckdb.connect(str(demo_outputs / "demo.duckdb"))
    con.execute("UPDATE quarantine SET value = ? WHERE rowid = (SELECT min(rowid) FROM "
                "quarantine)", [SGIC])
    con.close()
    result = audit_path(demo_outputs / "demo.duckdb", demo_needles)
    assert [(f.file, f.line, f.kind) for f in result.findings] == [
        ("demo.duckdb#quarantine.value", None, "identifier")]


def test_cli_exit_codes_and_output(demo_outputs: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    (demo_outputs / "report.html").unlink()  # its cells are the disclosure step's (above)
    clean = runner.invoke(app, ["audit", str(demo_outputs), "--study", str(DEMO)])
    assert clean.exit_code == 0, clean.output
    assert "0 finding(s)" in clean.output
    leak = tmp_path / "leak"
    leak.mkdir()
    (leak / "dashboard.html").write_text(f'<a href="?u={urllib.parse.quote(EMAIL)}">me</a>')
    pd.DataFrame({"dialogue": ["D1"], "n": [2]}).to_csv(leak / "counts.csv", index=False)
    found = runner.invoke(app, ["audit", str(leak), "--study", str(DEMO)])
    assert found.exit_code == 7, found.output
    assert "dashboard.html:1: identifier: value of column 'email', URL-escaped" in found.output
    assert "counts.csv:2: small-cell: column 'n'" in found.output
    for form in _forms(EMAIL):
        assert form not in found.output


def test_pseudonyms_flagged_only_when_asked(demo_outputs: Path) -> None:
    report = demo_outputs / "report.html"
    assert audit_path(report, None, pseudonyms=True).findings == []  # the report has none
    review = audit_path(demo_outputs / "linkage_review.csv", None, pseudonyms=True)
    assert review.findings and {f.kind for f in review.findings} == {"pseudonym"}
    assert audit_path(demo_outputs / "linkage_review.csv", None).findings == []


def test_suppressed_cell_recoverable_from_the_total(tmp_path: Path) -> None:
    # the example: 147 - 132 - 13 = 2 behind "<5"
    pd.DataFrame({"linkage": ["exact", "fuzzy", "quarantined", "total"],
                  "records": ["132", "13", "<5", "147"]}).to_csv(tmp_path / "link.csv",
                                                                 index=False)
    # two hidden parts: not recoverable by subtraction alone
    pd.DataFrame({"linkage": ["exact", "fuzzy", "quarantined", "total"],
                  "records": ["132", "<5", "<5", "147"]}).to_csv(tmp_path / "safe.csv",
                                                                 index=False)
    result = audit_path(tmp_path, None, k=5)
    assert [str(f) for f in result.findings] == [
        "link.csv:4: recoverable-cell: column 'records': the suppressed count equals the total "
        "row minus the other rows"]
