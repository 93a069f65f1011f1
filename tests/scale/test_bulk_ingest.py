"""The bulk (DuckDB) ingest leaves the store exactly as the row-wise ingest does.

Same inputs, same outputs: the responses, submissions, participants, quarantine, waves and
files tables are equal row for row, and bad input yields the same one-line problems (file,
row, column, rule, what to do). Studies or files outside what the bulk path reads are refused
in one line that says to use the row-wise ingest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ingest.mini_study import make_study
from tests.scale._compare import assert_same, both
from trackii_eval.errors import IngestError
from trackii_eval.ingest.bulk import ingest_bulk
from trackii_eval.ingest.core import ingest_study
from trackii_eval.pipeline.context import load_context
from trackii_eval.portfolio.generate import write_portfolio
from trackii_eval.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_portfolios_with_problems_give_identical_stores(tmp_path, key, seed):
    root = write_portfolio(tmp_path / "p", 120 + 40 * seed, 3, 9, n_dialogues=3, seed=seed,
                           bad_share=0.03)
    a, _ = assert_same(root, key)
    rules = set(a.problems["rule"])
    # the generator put every kind of problem in: the comparison covers them all
    assert {"missing_participant_code", "unknown_arm", "outside_wave_window",
            "duplicate_submission", "not_a_number", "outside_scale"} <= rules


WAVE1 = """pid,arm,side,dialogue,submitted_at,t1,t2,t3,extra_col
A001,dialogue,North,D1,2024-03-02,1,2,3,x
A002,dialogue,South,D1,2024-03-03, 4 ,"3,0",Strongly agree,
A003,comparison,North,,2024-03-04,-99,,9,
,dialogue,North,D1,2024-03-05,1,1,1,
A005,dialog,North,D1,2024-03-05,1,1,1,
A006,dialogue,East,D1,2024-03-05,1,1,1,
A007,dialogue,North,D9,2024-03-05,1,1,1,
A008,comparison,West,,2024-03-05,1,1,1,
A009,dialogue,North,D1,not a date,2,abc,2,
A010,dialogue,north,d1,2023-01-01,2,2,2,
A001,dialogue,North,D1,2024-03-09,5,5,5,
"A011","comparison","South","",2024-03-10T10:00:00Z,3,3,3,
A-012,dialogue,North,D1,2024-03-11 09:30,2,2,2,
"""
WAVE2 = """pid,arm,side,dialogue,submitted_at,t1,t2,t3
A001,dialogue,South,D1,2025-03-02,2,2,2
A002,dialogue,South,D1,2025-03-02,2,2,2
A003,comparison,North,,2025-03-02,Strongly disagree,2,0
B777,dialogue,North,D1,2025-03-02,2,2,2
A011,comparison,South,,2025-03-03,,,
"""


def _hand_study(tmp_path: Path, wave1: str = WAVE1, wave2: str = WAVE2) -> Path:
    (tmp_path / "w1.csv").write_text(wave1, encoding="utf-8")
    (tmp_path / "w2.csv").write_text(wave2, encoding="utf-8")
    root = make_study(tmp_path / "study", [(tmp_path / "w1.csv", "2024-03-01"),
                                           (tmp_path / "w2.csv", "2025-03-01")],
                      wave_options=["window: [2024-02-15, 2024-04-30]",
                                    "window: [2025-02-15, 2025-04-30]"])
    text = (root / "instrument.yaml").read_text()
    text = text.replace("  s: {min: 1, max: 5}",
                        "  s: {min: 1, max: 5, labels: {1: Strongly disagree, "
                        "5: Strongly agree}}")
    (root / "instrument.yaml").write_text(text.replace('missing_codes:\n',
                                                       'missing_codes:\n  "-99": refused\n'))
    return root


def test_every_rule_gives_the_same_one_line_problems(tmp_path, key):
    _, b = assert_same(_hand_study(tmp_path), key)
    rules = set(b.problems["rule"])
    assert {"unknown_item", "missing_participant_code", "unknown_arm", "unknown_side",
            "unknown_dialogue", "not_a_date", "outside_wave_window", "duplicate_submission",
            "not_a_number", "outside_scale", "conflicting_attributes",
            "unexpected_new_code"} <= rules
    # one line each, naming file, row and column, no raw participant code
    lines = b.report_lines()
    assert len(lines) == len(b.problems)
    assert any(line.startswith("w1.csv:12:pid: duplicate submission") for line in lines)
    assert any(line.startswith("w1.csv:10:t2: text where a number belongs") for line in lines)
    assert not any("A001" in line or "B777" in line for line in lines)


def test_reingest_unchanged_and_replaced_files_match(tmp_path, key):
    root = _hand_study(tmp_path)
    ctx = load_context(root)
    rowwise, bulk = Store(":memory:", "mini"), Store(":memory:", "mini")
    ingest_study(rowwise, ctx, key)
    ingest_bulk(bulk, ctx, key)
    again = ingest_bulk(bulk, ctx, key)
    assert list(again.table["status"]) == ["unchanged", "unchanged"]
    (root / "w2.csv").write_text(WAVE2 + "A009,dialogue,North,D1,2025-03-04,1,1,1\n")
    ctx = load_context(root)
    with pytest.raises(IngestError, match="--replace"):
        ingest_bulk(bulk, ctx, key)
    a = ingest_study(rowwise, ctx, key, replace=True)
    b = ingest_bulk(bulk, ctx, key, replace=True)
    assert list(b.table["status"]) == ["unchanged", "replaced"]
    assert a.table.equals(b.table)
    active = "SELECT count(*) AS n FROM responses WHERE sha256 IN (SELECT sha256 FROM files " \
             "WHERE active)"
    assert rowwise.query(active).equals(bulk.query(active))


def test_file_level_errors_are_the_row_wise_ones(tmp_path, key):
    root = _hand_study(tmp_path, wave2=WAVE2.replace("pid,", "code,", 1))
    ctx = load_context(root)
    with pytest.raises(IngestError) as rowwise:
        ingest_study(Store(":memory:", "mini"), ctx, key)
    with pytest.raises(IngestError) as bulk:
        ingest_bulk(Store(":memory:", "mini"), ctx, key)
    assert str(bulk.value) == str(rowwise.value)
    assert "missing_required_column" in str(bulk.value)


def test_a_file_of_another_wave_is_refused_alike(tmp_path, key):
    shifted = "\n".join(line.replace("2025-", "2024-") for line in WAVE2.splitlines()) + "\n"
    shifted += "".join(f"C{i:03d},comparison,North,,2024-03-0{i % 9 + 1},1,1,1\n"
                       for i in range(6))
    root = _hand_study(tmp_path, wave2=shifted)
    ctx = load_context(root)
    with pytest.raises(IngestError) as rowwise:
        ingest_study(Store(":memory:", "mini"), ctx, key)
    with pytest.raises(IngestError) as bulk:
        ingest_bulk(Store(":memory:", "mini"), ctx, key)
    assert str(bulk.value) == str(rowwise.value)
    assert "looks like the export of wave 1" in str(bulk.value)


@pytest.mark.parametrize(("text", "why"), [
    ("pid;arm;side;dialogue;submitted_at;t1;t2;t3\nA1;dialogue;North;D1;2025-03-02;1;1;1\n",
     "comma-separated"),
    ("pid,arm,side,dialogue,submitted_at,t1,t2,t3\n\nA1,dialogue,North,D1,2025-03-02,1,1,1\n",
     "blank lines"),
    ('pid,arm,side,dialogue,submitted_at,t1,t2,t3\nA1,dialogue,North,D1,"2025-03-02\n",1,1,1\n',
     "line breaks inside cells"),
    ("pid,arm,side,dialogue,submitted_at,t1,t2,t3\nA1,dialogue,North,D1,2025-03-02,1,1\n",
     "could not read"),
])
def test_files_outside_the_bulk_path_are_refused_in_one_line(tmp_path, key, text, why):
    root = _hand_study(tmp_path, wave2=text)
    with pytest.raises(IngestError) as err:
        ingest_bulk(Store(":memory:", "mini"), load_context(root), key)
    message = str(err.value)
    assert why in message and "row-wise ingest" in message and "\n" not in message
    assert "A1" not in message


def test_a_study_linked_by_self_generated_code_is_refused(key):
    with pytest.raises(IngestError, match=r"self-generated code.*row-wise ingest"):
        ingest_bulk(Store(":memory:", "demo"), load_context(ROOT / "surveys" / "demo"), key)


def test_same_key_same_pseudonyms_across_paths(tmp_path, key):
    rowwise, _, bulk, _ = both(_hand_study(tmp_path), key)
    people = "SELECT participant FROM participants ORDER BY participant"
    assert rowwise.query(people).equals(bulk.query(people))
    assert bulk.query(people)["participant"].str.match(r"^P-[0-9a-f]{16}$").all()


def test_the_ingest_stage_records_a_bulk_run(tmp_path, key):
    from trackii_eval.study import Study

    root = write_portfolio(tmp_path / "p", 40, 2, 4, n_dialogues=2)
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key, bulk=True)
    assert list(summary.table["status"]) == ["ingested", "ingested"]
    runs = study.store.query("SELECT stage FROM runs")
    assert runs["stage"].tolist() == ["ingest"]
    assert study.scores(long=True)["participant"].nunique() == 40
    study.close()


def test_codes_that_normalise_alike_are_one_person_a_duplicate_not_a_crash(tmp_path, key):
    # "a-012", "A 012" and "A-012" are one participant (one pseudonym): before, two of them in
    # one wave crashed both paths with a primary-key violation in the participants table
    wave1 = WAVE1 + "a 012,dialogue,North,D1,2024-03-12,3,3,3,\n"
    _, b = assert_same(_hand_study(tmp_path, wave1=wave1), key)
    lines = b.report_lines()
    n = len(wave1.strip().splitlines())  # the header is row 1, the last data row row n
    assert any(line.startswith(f"w1.csv:{n}:pid: duplicate submission") for line in lines)
    assert not any("012" in line for line in lines)
