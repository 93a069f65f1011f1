"""Key rotation: a store re-keyed from key A to key B equals the store a fresh ingest under key
B makes (every link, every decision, every derived value), and nothing of key A remains."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from trackii_eval import Study
from trackii_eval.cli import app
from trackii_eval.errors import KeyMismatchError, StoreError
from trackii_eval.ingest.linkage import read_decisions
from trackii_eval.ingest.pseudonym import load_key, write_key
from trackii_eval.privacy.rekey import pseudonyms_in, rekey_store

from ..conftest import DEMO

TABLES = {  # table -> sort key (every column compared)
    "participants": ["participant"],
    "submissions": ["wave", "row"],
    "responses": ["wave", "row", "item"],
    "ties": ["wave", "participant", "contact"],
    "quarantine": ["file", "row", "column"],
    "linkage": ["wave"],
    "derived": ["participant"],
}


def _decide(review: Path) -> pd.DataFrame:
    """Make the evaluator's decisions: link the first ambiguous record, make the next new."""
    table = pd.read_csv(review, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    open_rows = table.index[table["decision"] == ""].tolist()
    assert len(open_rows) >= 2
    first = table.loc[open_rows[0]]
    candidates = [c for c, p in zip(first["candidates"].split(" ; "),
                                    first["candidate_persons"].split(" ; "), strict=True)
                  if p.startswith("P-")]
    table.loc[open_rows[0], "decision"] = candidates[0]
    table.loc[open_rows[1], "decision"] = "new"
    table.to_csv(review, index=False, encoding="utf-8-sig")
    return table


def _derive(study: Study) -> None:
    """A derived table and a stored result that carry pseudonyms, as scores and fits do."""
    counts = study.store.query(
        "SELECT participant, count(*) AS n FROM responses GROUP BY participant")
    study.store.replace_table("derived", counts)
    first = study.store.query(
        "SELECT participant FROM submissions WHERE wave = 1 ORDER BY row LIMIT 3")[
        "participant"].tolist()
    study.store.put_result("with_pseudonyms", "test", {"participants": first,
                                                       "note": f"outlier {first[0]}"})


def _tables(study: Study) -> dict[str, pd.DataFrame]:
    out = {}
    for table, order in TABLES.items():
        if not study.store.has_table(table):
            continue
        frame = study.store.query(f"SELECT * FROM {table}")
        out[table] = frame.sort_values(order).reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("rekey")
    study_dir = base / "study"
    shutil.copytree(DEMO, study_dir)
    write_key(base / "a.key")
    write_key(base / "b.key")
    key_a, key_b = load_key(base / "a.key"), load_key(base / "b.key")
    study = Study.load(study_dir, out=base / "out")
    study.ingest(key_a)
    _decide(study.out / "linkage_review.csv")
    study.ingest(key_a)  # applies the decisions
    _derive(study)
    before = {
        "decisions": read_decisions(study.out / "linkage_review.csv"),
        "pseudonyms": set().union(*(pseudonyms_in(f) for f in _tables(study).values())),
        "results": study.store.results(),
    }
    result = rekey_store(study, key_a, key_b)
    study = Study.load(study_dir, out=base / "out")
    # the reference: a fresh ingest under key B, with the same decisions file
    fresh = Study.load(study_dir, out=base / "fresh")
    fresh.out.mkdir()
    shutil.copy(study.out / "linkage_review.csv", fresh.out / "linkage_review.csv")
    fresh.ingest(key_b)
    _derive(fresh)
    yield {"study": study, "fresh": fresh, "result": result, "before": before, "base": base,
           "key_a": key_a, "key_b": key_b, "study_dir": study_dir}
    study.close()
    fresh.close()


def test_rekeyed_store_equals_a_fresh_ingest_under_the_new_key(rotated) -> None:
    got, want = _tables(rotated["study"]), _tables(rotated["fresh"])
    for table in TABLES:
        pd.testing.assert_frame_equal(got[table], want[table], check_dtype=False, obj=table)
    assert len(got["participants"]) > 200 and len(got["ties"]) > 1000
    assert rotated["study"].store.results()["with_pseudonyms"] == \
        rotated["fresh"].store.results()["with_pseudonyms"]
    # the review file (candidate persons are pseudonyms) is the one key B gives
    assert (rotated["study"].out / "linkage_review.csv").read_bytes() == \
        (rotated["fresh"].out / "linkage_review.csv").read_bytes()


def test_every_link_and_decision_survives(rotated) -> None:
    study = rotated["study"]
    decisions = read_decisions(study.out / "linkage_review.csv")
    pd.testing.assert_frame_equal(decisions, rotated["before"]["decisions"])
    assert len(decisions) == 2
    summary = study.ingest(rotated["key_b"])  # the new key sees nothing to redo
    assert {f.status for f in summary.files} == {"unchanged"}
    assert study.store.get_meta("linkage_fingerprint") == \
        rotated["fresh"].store.get_meta("linkage_fingerprint")


def test_no_old_pseudonym_remains_and_the_key_version_is_recorded(rotated) -> None:
    study, result = rotated["study"], rotated["result"]
    now = set().union(*(pseudonyms_in(f) for f in _tables(study).values()))
    old = rotated["before"]["pseudonyms"]
    assert len(old) == len(now) > 200 and not (old & now)
    assert study.store.get_meta("key_version") == "2" and result.key_version == 2
    assert study.store.get_meta("key_fingerprint") == rotated["key_b"].fingerprint
    log = study.store.query("SELECT * FROM key_log ORDER BY version")
    assert log["version"].tolist() == [1, 2]
    assert log["fingerprint"].tolist() == [rotated["key_a"].fingerprint,
                                           rotated["key_b"].fingerprint]
    assert set(study.store.query("SELECT DISTINCT key_fingerprint FROM files")[
        "key_fingerprint"]) == {rotated["key_b"].fingerprint}
    text = (study.out / "key_rotation.log").read_text()
    assert rotated["key_b"].fingerprint in text and "key version 2" in text
    assert result.pseudonyms == len(now)
    assert (study.store_path.stat().st_mode & 0o077) == 0


def test_refuses_a_wrong_old_key_and_leaves_the_store_alone(rotated, tmp_path: Path) -> None:
    study = rotated["study"]
    write_key(tmp_path / "c.key")
    with pytest.raises(KeyMismatchError, match="not with the old key given"):
        rekey_store(study, rotated["key_a"], load_key(tmp_path / "c.key"))
    with pytest.raises(StoreError, match="the new key is the old key"):
        rekey_store(study, rotated["key_b"], rotated["key_b"])
    assert study.store.get_meta("key_fingerprint") == rotated["key_b"].fingerprint


def test_refuses_when_a_wave_file_changed_since_ingest(rotated, tmp_path: Path) -> None:
    study_dir = tmp_path / "study"
    shutil.copytree(rotated["study_dir"], study_dir)
    shutil.copytree(rotated["study"].out, tmp_path / "out")
    wave = study_dir / "waves" / "wave3_followup1.csv"
    original = wave.read_bytes()
    wave.write_bytes(original + b"\n")
    write_key(tmp_path / "c.key")
    runner = CliRunner()
    args = ["rekey", str(study_dir), "--out", str(tmp_path / "out"),
            "--old-key-file", str(rotated["base"] / "b.key"),
            "--new-key-file", str(tmp_path / "c.key")]
    result = runner.invoke(app, args)
    assert result.exit_code == 6, result.output
    assert "wave3_followup1.csv: differs from the version ingested" in result.output
    # with the file restored, a second rotation goes through: key version 3
    wave.write_bytes(original)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "now key version 3" in result.output
    again = Study.load(study_dir, out=tmp_path / "out")
    log = again.store.query("SELECT version, previous_fingerprint FROM key_log ORDER BY version")
    assert log["version"].tolist() == [1, 2, 3]
    assert log["previous_fingerprint"].iloc[2] == rotated["key_b"].fingerprint
    again.close()


def test_rekey_of_a_study_linked_by_participant_code(tmp_path: Path) -> None:
    study_dir = tmp_path / "study"
    shutil.copytree(DEMO, study_dir)
    lines = (study_dir / "study.yaml").read_text().splitlines()
    start = lines.index("linkage:")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    (study_dir / "study.yaml").write_text("\n".join(lines[:start] + lines[end:]) + "\n")
    write_key(tmp_path / "a.key")
    write_key(tmp_path / "b.key")
    key_a, key_b = load_key(tmp_path / "a.key"), load_key(tmp_path / "b.key")
    study = Study.load(study_dir, out=tmp_path / "out")
    assert study.config.linkage.method == "id"
    study.ingest(key_a)
    _derive(study)
    old = set().union(*(pseudonyms_in(f) for f in _tables(study).values()))
    result = rekey_store(study, key_a, key_b)
    fresh = Study.load(study_dir, out=tmp_path / "fresh")
    fresh.ingest(key_b)
    _derive(fresh)
    got, want = _tables(study), _tables(fresh)
    for table in TABLES:
        if table != "linkage":
            pd.testing.assert_frame_equal(got[table], want[table], check_dtype=False, obj=table)
    now = set().union(*(pseudonyms_in(f) for f in got.values()))
    assert len(now) == len(old) > 200 and not (old & now)
    assert result.key_version == 2 and len(got["ties"]) > 1000
    study.close()
    fresh.close()
