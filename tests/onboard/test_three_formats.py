"""From three exports in three formats to a report: `init`, a person's edits, `check`, `run`.

The exports (tests/onboard/threeformats.py) are a Qualtrics CSV (code in ``Q2``, items
``Q5_1``...), an SPSS file (code ``pcode``, side 1/2 with value labels) and a KoboToolbox CSV
with its XLSForm (side as choice names ``a``/``b``); arms come from the evaluator's enrolment
list. The simulated truth says who is who: every person must be linked across the waves they
answered, carry their own side and arm, and every item of every wave must be mapped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from trackii_eval import Study
from trackii_eval.cli import app
from trackii_eval.ingest.pseudonym import load_key

from . import write_exports

runner = CliRunner()

# what a person changes in the drafts after reading the REVIEW lines (recorded edits)
EDITS = {
    "study.yaml": [
        ("id: three-formats", "id: peace-panel"),
        ("name: three-formats", 'name: "Peace panel (simulated)"'),
        ("{id: D1, name: D1,", "{id: D1, name: Borderlands dialogue,"),
        ("label: Wave 1,", "label: Baseline,"),
        ("label: Wave 2,", "label: After the workshops,"),
        ("label: Wave 3, phase: follow_up", "label: Follow-up, phase: follow_up"),
    ],
    "instrument.yaml": [
        ("name: Drafted instrument", "name: Peace panel instrument"),
    ],
}


def _apply(root: Path) -> None:
    for name, edits in EDITS.items():
        path = root / name
        text = path.read_text()
        for old, new in edits:
            assert old in text, (name, old)
            text = text.replace(old, new)
        path.write_text(text + ("program_end_wave: 2\n" if name == "study.yaml" else ""))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, key_file: Path):
    root = tmp_path_factory.mktemp("exports") / "three-formats"
    truth = write_exports(root)
    result = runner.invoke(app, ["init", str(root)])
    assert result.exit_code == 0, result.output
    _apply(root)
    out = root.parent / "out"
    result = runner.invoke(app, ["check", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not out.exists()  # a dry run writes nothing
    result = runner.invoke(app, ["run", str(root), "--out", str(out), "--key-file",
                                 str(key_file)])
    assert result.exit_code == 0, result.output
    study = Study.load(root, out=out)
    yield study, truth, load_key(key_file)
    study.close()


def test_init_declares_per_wave_columns_identifiers_and_renames(built) -> None:
    study, _, _ = built
    waves = study.config.waves
    assert [w.file for w in waves] == ["wave1_qualtrics.csv", "wave2_spss.sav",
                                       "wave3_kobo.csv"]
    assert waves[0].columns == {"code": "Q2", "side": "Q3"}
    inst = study.instrument
    assert "Q1" in inst.identifiers  # "Your name (optional)"
    assert "IPAddress" in inst.identifiers
    assert inst.renames == {1: {"Q5_1": "trust_1", "Q5_2": "trust_2", "Q5_3": "trust_3",
                                "Q6_1": "contact_1", "Q6_2": "contact_2", "Q6_3": "contact_3"}}
    assert {c: [i.id for i in con.items] for c, con in inst.constructs.items()} == {
        "perceptions": ["trust_1", "trust_2", "trust_3"],
        "relationships": ["contact_1", "contact_2", "contact_3"]}
    assert [i.id for i in inst.constructs["perceptions"].items if i.reverse] == ["trust_3"]
    assert study.config.participants is not None


def test_every_person_linked_with_their_side_and_arm(built) -> None:
    study, truth, key = built
    expected = truth.assign(participant=key.pseudonymize_many(truth["code"]).to_numpy())
    stored = study.store.query("SELECT participant, arm, side FROM participants")
    merged = expected.merge(stored, on="participant", how="outer", suffixes=("", "_stored"),
                            indicator=True)
    assert (merged["_merge"] == "both").all() and len(merged) == 48
    assert (merged["side"] == merged["side_stored"]).all()
    assert (merged["arm"] == merged["arm_stored"]).all()
    waves = study.store.query("SELECT participant, count(DISTINCT wave) AS n FROM submissions "
                              "GROUP BY 1")
    # 44 answered all three waves, the last 4 skipped the SPSS wave
    assert sorted(waves["n"].tolist()) == [2] * 4 + [3] * 44


def test_every_item_mapped_and_nothing_quarantined(built) -> None:
    study, _, _ = built
    assert study.store.query("SELECT count(*) AS n FROM quarantine")["n"].iloc[0] == 0
    items = study.store.query("SELECT wave, count(DISTINCT item) AS n, count(*) AS cells "
                              "FROM responses GROUP BY 1 ORDER BY 1")
    assert items["n"].tolist() == [6, 6, 6]
    assert items["cells"].tolist() == [48 * 6, 44 * 6, 48 * 6]
    missing = study.store.query("SELECT count(*) AS n FROM responses WHERE value IS NULL")
    assert missing["n"].iloc[0] == 0
    assert (study.out / "report.html").exists()
