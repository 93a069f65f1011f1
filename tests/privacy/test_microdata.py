"""De-identified microdata export: k-anonymity computed exactly, coarsening suggested, the
export consistent with the store, free text excluded, encryption round trip, owner-only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from trackii_eval import Study
from trackii_eval.cli import app
from trackii_eval.privacy.audit import audit_path
from trackii_eval.privacy.encrypt import EncryptionError, decrypt_bytes, encrypt_bytes
from trackii_eval.privacy.microdata import ExportRefused, export_microdata, k_anonymity

from ..conftest import DEMO

PASSPHRASE = "correct horse battery staple"


def _people() -> pd.DataFrame:
    rows = ([("North", "D1", "F", "ngo")] * 10 + [("North", "D1", "M", "ngo")] * 2
            + [("South", "D1", "F", "ngo")] * 6 + [("South", "D1", "M", "press")] * 5
            + [("South", "D1", "M", "army")])
    return pd.DataFrame(rows, columns=["side", "dialogue", "gender", "sector"]).assign(
        participant=lambda f: [f"P-{i:016x}" for i in range(len(f))])


def test_k_anonymity_classes_and_suggestions_are_exact() -> None:
    people = _people()
    report = k_anonymity(people, 5)
    assert report.quasi_identifiers == ["side", "dialogue", "sector", "gender"]
    want = people.groupby(report.quasi_identifiers).size()
    got = report.classes.set_index(report.quasi_identifiers)["n"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    # (North, M) 2 and (South, army, M) 1 are below 5
    assert report.records_at_risk == 3 and report.min_class_size == 1 and not report.ok
    s = report.suggestions.set_index("action")
    assert s.loc["none (as exported)", "records_at_risk"] == 3
    # each option checked by hand: dropping gender leaves (South, army) = 1
    assert s.loc["drop gender", "records_at_risk"] == 1
    assert s.loc["drop sector", "records_at_risk"] == 2  # (North, M) = 2
    assert s.loc["drop sector, gender", "records_at_risk"] == 0
    merged = "merge categories of sector with fewer than 5 into 'other'"
    assert s.loc[merged, "records_at_risk"] == 3  # army joins press as "other": M 6; North M 2
    # k-anonymous options first, and among them those that drop the fewest variables
    first = report.suggestions.iloc[0]
    assert first["records_at_risk"] == 0
    assert first["action"].count(",") == 1  # two variables must go, no single drop suffices
    assert "Not k-anonymous" in report.markdown()


def test_missing_dialogue_is_a_category_of_its_own() -> None:
    people = pd.DataFrame({"arm": ["comparison"] * 6 + ["dialogue"] * 6,
                           "dialogue": [None] * 6 + ["D1"] * 6})
    report = k_anonymity(people, 5)
    assert report.ok and sorted(report.classes["n"]) == [6, 6]
    assert "(none)" in set(report.classes["dialogue"])


def test_export_is_consistent_with_the_store(demo_run, tmp_path: Path) -> None:
    study = demo_run[0]
    result = export_microdata(study, tmp_path / "export")
    folder = tmp_path / "export"
    assert result.report.ok and result.report.min_class_size >= 5
    names = {p.name for p in folder.iterdir()}
    assert names == {"participants.csv", "responses.csv", "scores.csv", "data_dictionary.csv",
                     "k_anonymity.csv", "k_anonymity.md", "manifest.json"}
    people = pd.read_csv(folder / "participants.csv", dtype={"dialogue": str})
    responses = pd.read_csv(folder / "responses.csv")
    scores = pd.read_csv(folder / "scores.csv")
    store_resp = study.store.active_responses()
    # fresh export IDs, none of the store's pseudonyms
    assert people["participant"].str.fullmatch(r"X-[0-9a-f]{12}").all()
    assert not set(people["participant"]) & set(store_resp["participant"])
    assert len(people) == store_resp["participant"].nunique()
    assert set(responses["participant"]) <= set(people["participant"])
    assert set(scores["participant"]) <= set(people["participant"])
    # the same answers, attached to the same design attributes, as in the store
    cols = ["arm", "side", "dialogue", "wave", "item", "value"]
    got = responses.merge(people, on="participant")[cols]
    want = store_resp[cols]

    def canon(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({"value": float}).astype(object).where(frame.notna(), "")
        return frame.astype(str).sort_values(cols).reset_index(drop=True)

    pd.testing.assert_frame_equal(canon(got), canon(want))
    # what must not go out
    for frame in (people, responses, scores):
        assert not {"submitted_at", "sha256", "row", "file", "first_wave"} & set(frame.columns)
    dictionary = pd.read_csv(folder / "data_dictionary.csv")
    for name, frame in (("participants", people), ("responses", responses), ("scores", scores)):
        documented = set(dictionary.loc[dictionary["file"] == f"{name}.csv", "column"])
        assert set(frame.columns) <= documented
    items = {c.removeprefix("item ") for c in dictionary["column"] if c.startswith("item ")}
    assert set(responses["item"]) <= items
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["k_anonymous"] and manifest["free_text"] == "excluded"
    assert manifest["pseudonyms"] == "random per export"
    # owner-only at rest, and nothing an audit would flag
    assert all((p.stat().st_mode & 0o077) == 0 for p in folder.iterdir())
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert audit_path(folder, None, k=5).findings == []
    # a second export cannot be joined to the first
    again = export_microdata(study, tmp_path / "again")
    assert again.report.ok
    assert not set(pd.read_csv(tmp_path / "again" / "participants.csv")["participant"]) & set(
        people["participant"])


def test_export_below_k_is_refused_with_coarsening(demo_run, tmp_path: Path) -> None:
    study = demo_run[0]
    with pytest.raises(ExportRefused, match="not k-anonymous at k=30"):
        export_microdata(study, tmp_path / "refused", k=30)
    assert {p.name for p in (tmp_path / "refused").iterdir()} == {"k_anonymity.csv",
                                                                  "k_anonymity.md"}
    text = (tmp_path / "refused" / "k_anonymity.md").read_text()
    assert "Not k-anonymous" in text and "| drop dialogue |" in text
    ok = export_microdata(study, tmp_path / "coarse", k=30, drop=["dialogue"])
    assert ok.report.ok and ok.report.quasi_identifiers == ["arm", "side"]
    assert "dialogue" not in pd.read_csv(tmp_path / "coarse" / "participants.csv").columns


def test_free_text_is_excluded_by_default(demo_run, tmp_path: Path) -> None:
    study = demo_run[0]
    study.store.execute("CHECKPOINT")
    (tmp_path / "store").mkdir()
    shutil.copy(study.store_path, tmp_path / "store" / study.store_path.name)
    copy = Study.load(DEMO, out=tmp_path / "store")
    copy.store.execute("ALTER TABLE participants ADD COLUMN notes VARCHAR")
    copy.store.execute("UPDATE participants SET notes = 'spoke about her brother'")
    default = export_microdata(copy, tmp_path / "default")
    assert default.excluded_free_text == ["participants.notes"]
    assert "notes" not in pd.read_csv(tmp_path / "default" / "participants.csv").columns
    opted = export_microdata(copy, tmp_path / "opted", include_free_text=True)
    assert opted.excluded_free_text == []
    assert "notes" in pd.read_csv(tmp_path / "opted" / "participants.csv").columns
    copy.close()


def test_encrypted_export_round_trip(demo_run, tmp_path: Path, monkeypatch) -> None:
    study = demo_run[0]
    monkeypatch.setenv("TRACKII_EVAL_EXPORT_PASSPHRASE", PASSPHRASE)
    runner = CliRunner()
    target = tmp_path / "archive.enc"
    made = runner.invoke(app, ["export", str(DEMO), "--out", str(study.out), "--to",
                               str(target), "--encrypt"])
    assert made.exit_code == 0, made.output
    blob = target.read_bytes()
    assert b"participant" not in blob and (target.stat().st_mode & 0o077) == 0
    assert "encrypted export" in audit_path(tmp_path, None).notes[0]
    opened = runner.invoke(app, ["decrypt", str(target), "--to", str(tmp_path / "open")])
    assert opened.exit_code == 0, opened.output
    people = pd.read_csv(tmp_path / "open" / "participants.csv")
    assert len(people) == study.store.active_responses()["participant"].nunique()
    monkeypatch.setenv("TRACKII_EVAL_EXPORT_PASSPHRASE", PASSPHRASE + "x")
    wrong = runner.invoke(app, ["decrypt", str(target), "--to", str(tmp_path / "wrong")])
    assert wrong.exit_code == 6 and "wrong passphrase" in wrong.output


def test_encryption_refuses_short_passphrases_and_detects_tampering() -> None:
    with pytest.raises(EncryptionError, match="at least 12"):
        encrypt_bytes(b"data", "short")
    blob = bytearray(encrypt_bytes(b"secret table", PASSPHRASE))
    assert decrypt_bytes(bytes(blob), PASSPHRASE) == b"secret table"
    blob[-5] ^= 1
    with pytest.raises(EncryptionError, match="wrong passphrase, or the file was changed"):
        decrypt_bytes(bytes(blob), PASSPHRASE)


def test_cli_export_below_k_exits_7(demo_run, tmp_path: Path) -> None:
    study = demo_run[0]
    result = CliRunner().invoke(app, ["export", str(DEMO), "--out", str(study.out), "--to",
                                      str(tmp_path / "x"), "--k", "30"])
    assert result.exit_code == 7, result.output
    assert "not k-anonymous at k=30" in result.output
