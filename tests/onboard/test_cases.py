"""The issue-9 cases (copied from ../shared/cases): per-wave participant columns, side coded
differently per wave, and arms known only from the evaluator's own list."""

from __future__ import annotations

import shutil
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest

from trackii_eval import Study
from trackii_eval.errors import ConfigError, IngestError, ModelError

CASES = Path(__file__).parent / "cases"


def _copy(case: str, tmp_path: Path) -> Path:
    dest = tmp_path / case
    shutil.copytree(CASES / case, dest)
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def _linked(study: Study) -> pd.DataFrame:
    """Per participant: the waves they were stored in."""
    return study.store.query(
        "SELECT participant, count(DISTINCT wave) AS waves FROM submissions GROUP BY 1")


# ------------------------------------------------------------- participant-columns-per-wave


def test_code_column_named_per_wave_links_everyone(tmp_path: Path, key) -> None:
    root = _copy("participant-columns-per-wave", tmp_path)
    _edit(root / "study.yaml", "file: wave1.csv}", "file: wave1.csv, columns: {code: Q2}}")
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key)
    assert summary.problems.empty, summary.problem_lines()
    linked = _linked(study)
    assert len(linked) == 3 and (linked["waves"] == 2).all()  # 3 of 3 linked
    # the raw code never reaches the store
    stored = study.store.query("SELECT * FROM submissions").to_string()
    assert "AB01RZ02" not in stored


def test_code_column_per_wave_missing_column_names_near_matches(tmp_path: Path, key) -> None:
    root = _copy("participant-columns-per-wave", tmp_path)
    _edit(root / "study.yaml", "file: wave1.csv}", "file: wave1.csv, columns: {code: Q3}}")
    study = Study.load(root, out=tmp_path / "out")
    with pytest.raises(IngestError) as exc:
        study.ingest(key)
    msg = str(exc.value)
    assert "wave1.csv" in msg and "'Q3'" in msg and "near matches in its header: Q2" in msg


def test_renaming_the_code_as_an_item_points_at_its_line_and_says_what_to_do(
        tmp_path: Path) -> None:
    root = _copy("participant-columns-per-wave", tmp_path)
    shutil.copy(root / "instrument_rename_code.yaml", root / "instrument.yaml")
    with pytest.raises(ConfigError) as exc:
        Study.load(root, out=tmp_path / "out")
    msg = str(exc.value)
    line = next(i for i, t in enumerate((root / "instrument.yaml").read_text().splitlines(), 1)
                if "Q2: pcode" in t)
    assert f"instrument.yaml:{line}: renames[1].Q2:" in msg
    assert "columns: {code: Q2}" in msg


def test_unknown_role_in_wave_columns_is_reported_at_its_line(tmp_path: Path) -> None:
    root = _copy("participant-columns-per-wave", tmp_path)
    _edit(root / "study.yaml", "file: wave1.csv}",
          "file: wave1.csv,\n     columns: {code: Q2, sector: Q9}}")
    with pytest.raises(ConfigError) as exc:
        Study.load(root, out=tmp_path / "out")
    line = next(i for i, t in enumerate((root / "study.yaml").read_text().splitlines(), 1)
                if "sector: Q9" in t)
    assert f"study.yaml:{line}: waves[0].columns.sector:" in str(exc.value)
    assert "declare further ones under attributes" in str(exc.value)


# ------------------------------------------------------------- side-coding-per-wave


def test_spss_value_labels_harmonise_side_and_everyone_links(tmp_path: Path, key) -> None:
    root = _copy("side-coding-per-wave", tmp_path)
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key)
    assert summary.problems.empty, summary.problem_lines()
    linked = _linked(study)
    assert len(linked) == 3 and (linked["waves"] == 2).all()
    sides = study.store.query("SELECT side, count(*) AS n FROM participants GROUP BY 1")
    assert dict(zip(sides["side"], sides["n"], strict=True)) == {"A": 2, "B": 1}


def test_side_recode_map_per_wave(tmp_path: Path, key) -> None:
    root = _copy("side-coding-per-wave", tmp_path)
    # wave 1 coded 1/2 as text, without any labels: only a recode can say what they mean
    (root / "wave1.csv").write_text("pcode,side,trust_1\nAB01RZ02,1,4\nCD02EF03,2,5\n"
                                    "GH04IJ05,1,3\n")
    _edit(root / "study.yaml", "file: wave1.csv}",
          "file: wave1.csv,\n     recode: {side: {1: A, 2: B}}}")
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key)
    assert summary.problems.empty, summary.problem_lines()
    assert len(_linked(study)) == 3 and (_linked(study)["waves"] == 2).all()


def test_side_matching_no_declared_side_is_a_reported_problem(tmp_path: Path, key) -> None:
    root = _copy("side-coding-per-wave", tmp_path)
    (root / "wave1.csv").write_text("pcode,side,trust_1\nAB01RZ02,A,4\nCD02EF03,C,5\n"
                                    "GH04IJ05,A,3\n")
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key)
    lines = summary.problem_lines()
    assert lines == ["wave1.csv:3:side: side not one of the dialogue's sides: declared sides: "
                     "A, B; map this wave's values under recode: in study.yaml (C)"]
    # nothing lost: the row is in quarantine with its reason, the others are linked
    q = study.store.query("SELECT * FROM quarantine WHERE rule = 'unknown_side'")
    assert len(q) == 1 and int(q["row"].iloc[0]) == 3
    assert (_linked(study)["waves"] == 2).sum() == 2


def test_recode_to_undeclared_side_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    root = _copy("side-coding-per-wave", tmp_path)
    _edit(root / "study.yaml", "file: wave2.sav}",
          "file: wave2.sav,\n     recode: {side: {1: A, 2: Z}}}")
    with pytest.raises(ConfigError) as exc:
        Study.load(root, out=tmp_path / "out")
    msg = str(exc.value)
    line = next(i for i, t in enumerate((root / "study.yaml").read_text().splitlines(), 1)
                if "recode:" in t)
    assert f"study.yaml:{line}: waves[1].recode.side" in msg
    assert "'Z', which is not a declared side (declared: A, B)" in msg


# ------------------------------------------------------------- arm-not-in-exports

_LIST = ("code,arm,dialogue,sector\n"
         "AB01RZ02,dialogue,D1,civil society\nCD02EF03,dialogue,D1,government\n"
         "GH04IJ05,dialogue,D1,academia\nKL06MN07,comparison,,government\n"
         "OP08QR09,comparison,,civil society\nst10uv11,comparison,,academia\n")


def test_without_arms_run_says_no_participant_has_an_arm(tmp_path: Path, key) -> None:
    root = _copy("arm-not-in-exports", tmp_path)
    study = Study.load(root, out=tmp_path / "out")
    study.ingest(key)
    study.score()
    with pytest.raises(ModelError, match="no participant has an arm") as exc:
        study.fit_models()
    assert "participants: {file:" in str(exc.value)


def test_arms_from_participant_list(tmp_path: Path, key) -> None:
    root = _copy("arm-not-in-exports", tmp_path)
    (root / "enrolment.csv").write_text(_LIST)
    _edit(root / "study.yaml", "program_end_wave: 2",
          "program_end_wave: 2\nparticipants: {file: enrolment.csv, code: code}\n"
          "attributes:\n  sector: [government, civil society, academia]")
    study = Study.load(root, out=tmp_path / "out")
    summary = study.ingest(key)
    assert summary.problems.empty, summary.problem_lines()
    arms = study.store.query("SELECT arm, dialogue, count(*) AS n FROM participants "
                             "GROUP BY ALL ORDER BY arm")
    assert arms.fillna("-").to_dict(orient="list") == {
        "arm": ["comparison", "dialogue"], "dialogue": ["-", "D1"], "n": [3, 3]}
    sectors = study.store.query("SELECT value, count(*) AS n FROM participant_attributes "
                                "WHERE attribute = 'sector' GROUP BY 1 ORDER BY 1")
    assert sectors["n"].tolist() == [2, 2, 2]
    # the list's raw codes are stored nowhere
    dump = "".join(study.store.query(f"SELECT * FROM {t}").to_string() for t in
                   ("participants", "participant_attributes", "submissions", "quarantine"))
    assert "AB01RZ02" not in dump and "KL06" not in dump
    study.score()
    results = study.fit_models()
    assert results.fits  # the models now run on two arms


def test_participant_list_problems_name_file_row_column_value(tmp_path: Path, key) -> None:
    root = _copy("arm-not-in-exports", tmp_path)
    bad = _LIST.replace("KL06MN07,comparison", "KL06MN07,control").replace(
        "OP08QR09", "ZZ99ZZ99")
    (root / "enrolment.csv").write_text(bad)
    _edit(root / "study.yaml", "program_end_wave: 2",
          "program_end_wave: 2\nparticipants: {file: enrolment.csv}\n"
          "attributes: {sector: null}")
    study = Study.load(root, out=tmp_path / "out")
    lines = study.ingest(key).problem_lines()
    assert "enrolment.csv:5:arm: value is not a declared category: declared arms: dialogue, "\
        "comparison (control)" in lines
    assert any(line.startswith("enrolment.csv:6:code: code in the participant list matches no "
                               "participant") and "ZZ99ZZ99" not in line for line in lines)
    assert len(lines) == 2


# ------------------------------------------------------------- planned waves


def test_planned_wave_without_file_does_not_block_and_warns_when_overdue(
        tmp_path: Path, key) -> None:
    import datetime as dt

    from trackii_eval.config import config_warnings, load_study_config

    root = _copy("arm-not-in-exports", tmp_path)
    (root / "enrolment.csv").write_text(_LIST)
    _edit(root / "study.yaml", "program_end_wave: 2",
          "  - {index: 3, label: Follow-up 2, phase: follow_up, date: 2026-03-01}\n"
          "program_end_wave: 2\nparticipants: {file: enrolment.csv}\n"
          "attributes: {sector: null}")
    study = Study.load(root, out=tmp_path / "out")
    assert [w.planned for w in study.config.waves] == [False, False, True]
    summary = study.ingest(key)
    assert [(f.wave, f.status) for f in summary.files] == [
        (1, "ingested"), (2, "ingested"), (3, "planned")]
    assert "(planned)" in summary.summary()
    waves = study.store.query("SELECT wave FROM waves ORDER BY wave")["wave"].tolist()
    assert waves == [1, 2, 3]  # shown, with its date, as planned
    study.score()
    assert study.fit_models().fits
    assert study.report().exists()
    config, lines = load_study_config(root / "study.yaml")
    assert config_warnings(config, lines, today=dt.date(2025, 6, 1)) == []
    late = config_warnings(config, lines, "study.yaml", today=dt.date(2026, 6, 1))
    assert len(late) == 1 and "wave 3 is planned (no file:) but dated 2026-03-01" in late[0]
    early = config_warnings(config, lines, "study.yaml", today=dt.date(2024, 6, 1))
    assert len(early) == 1 and "wave 2 has a file but is dated 2025-03-01, in the future" \
        in early[0]
    assert early[0].startswith("study.yaml:13: waves[1].date")


def test_attribute_named_per_wave_is_stored_and_checked(tmp_path: Path, key) -> None:
    root = _copy("arm-not-in-exports", tmp_path)
    wave1 = pd.read_csv(root / "wave1.csv", dtype=str)
    wave1.insert(2, "Q9", ["gov", "Civil", "army", None, "gov", "gov"])
    wave1.to_csv(root / "wave1.csv", index=False)
    enrolment = pd.read_csv(StringIO(_LIST), dtype=str).drop(columns="sector")
    enrolment.to_csv(root / "enrolment.csv", index=False)
    _edit(root / "study.yaml", "file: wave1.csv}",
          "file: wave1.csv,\n     columns: {sector: Q9}, recode: {sector: {gov: government}}}")
    _edit(root / "study.yaml", "program_end_wave: 2",
          "program_end_wave: 2\nparticipants: {file: enrolment.csv}\n"
          "attributes: {sector: [government, civil society]}")
    study = Study.load(root, out=tmp_path / "out")
    lines = study.ingest(key).problem_lines()
    assert lines == ["wave1.csv:4:sector: value is not a declared category: declared sector: "
                     "government, civil society; map it under the wave's recode: (army)",
                     "wave1.csv:3:sector: value is not a declared category: declared sector: "
                     "government, civil society; map it under the wave's recode: (Civil)"][::-1]
    sectors = study.store.query("SELECT value, source, count(*) AS n FROM "
                                "participant_attributes GROUP BY ALL")
    assert sectors.to_dict(orient="list") == {"value": ["government"], "source": ["wave"],
                                              "n": [3]}
    # the row with the undeclared sector is kept: its answers are stored
    assert study.store.query("SELECT count(DISTINCT participant) AS n FROM submissions "
                             "WHERE wave = 1")["n"].iloc[0] == 6
