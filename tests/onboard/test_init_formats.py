"""`init` with KoboToolbox XLSForms and Stata labels: choices, variable and value labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trackii_eval.config import load_study_config
from trackii_eval.onboard.check import check_study
from trackii_eval.onboard.init import init_study


def test_xlsform_choices_recode_side_and_label_items(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 24
    codes = [f"C{100 + i}" for i in range(n)]
    sides = np.where(np.arange(n) % 2 == 0, "North", "South")
    base = rng.normal(0, 1, n)

    def items() -> dict[str, np.ndarray]:
        return {f"att_{k}": np.clip(np.rint(3 + base + rng.normal(0, .5, n)), 1, 5).astype(int)
                for k in (1, 2, 3)}

    pd.DataFrame({"participant_code": codes, "side": sides, **items(),
                  "submitted_at": "2024-05-02"}).to_csv(tmp_path / "w1.csv", index=False)
    pd.DataFrame({"grp/participant_code": codes, "grp/side": np.where(sides == "North", 1, 2),
                  **{f"grp/{k}": v for k, v in items().items()},
                  "_uuid": [f"u{i}" for i in range(n)],
                  "_submission_time": "2025-05-02T10:00:00"}).to_csv(tmp_path / "w2.csv",
                                                                      index=False)
    survey = pd.DataFrame({"type": ["text", "select_one sides", *["integer"] * 3],
                           "name": ["participant_code", "side", "att_1", "att_2", "att_3"],
                           "label": ["Code", "Side", "I trust the other side's negotiators.",
                                     "The other side wants peace.",
                                     "The other side keeps its word."]})
    choices = pd.DataFrame({"list_name": ["sides", "sides"], "name": ["1", "2"],
                            "label": ["North", "South"]})
    with pd.ExcelWriter(tmp_path / "form.xlsx") as writer:
        survey.to_excel(writer, sheet_name="survey", index=False)
        choices.to_excel(writer, sheet_name="choices", index=False)
    init_study(tmp_path)
    config, _ = load_study_config(tmp_path / "study.yaml")
    assert [w.file for w in config.waves] == ["w1.csv", "w2.csv"]
    assert config.waves[0].recode == {}
    assert {k: dict(v) for k, v in config.waves[1].recode.items()} == {
        "side": {1: "North", 2: "South"}}
    assert config.dialogues[0].sides == ["North", "South"]
    assert "text: The other side wants peace." in (tmp_path / "instrument.yaml").read_text()
    report = check_study(tmp_path, out=tmp_path / "out")
    assert report.problems.empty
    assert report.unlinked["new"].tolist() == [0]  # all 24 linked in the Kobo wave


def test_stata_variable_and_value_labels(tmp_path: Path) -> None:
    import pyreadstat

    rng = np.random.default_rng(5)
    n = 30
    codes = [f"K{200 + i}" for i in range(n)]
    side = np.where(np.arange(n) % 3 == 0, 1, 2)
    base = rng.normal(0, 1, n)
    texts = {"q1": "The other side can be trusted.", "q2": "The other side wants peace.",
             "q3": "The other side lies to us."}

    def answers() -> dict[str, np.ndarray]:
        out = {k: np.clip(np.rint(3 + base + rng.normal(0, .5, n)), 1, 5) for k in texts}
        out["q3"] = 6 - out["q3"]
        return out

    pd.DataFrame({"pcode": codes, "side": np.where(side == 1, "East", "West"), **answers(),
                  "date": "2024-02-01"}).to_csv(tmp_path / "a_wave1.csv", index=False)
    frame = pd.DataFrame({"pcode": codes, "side": side.astype(float), **answers()})
    frame["date"] = "2025-02-01"
    pyreadstat.write_dta(frame, str(tmp_path / "b_wave2.dta"),
                         column_labels={"pcode": "Participant code", "side": "Side", **texts,
                                        "date": "Interview date"},
                         variable_value_labels={"side": {1: "East", 2: "West"},
                                                **{k: {1: "Disagree", 5: "Agree"}
                                                   for k in texts}})
    draft = init_study(tmp_path)
    text = (tmp_path / "instrument.yaml").read_text()
    assert "text: The other side lies to us." in text
    assert "labels: {1: Disagree, 5: Agree}" in text  # from the Stata value labels
    assert {i: v["reverse"] for i, v in draft.items.items()} == {"q1": False, "q2": False,
                                                                  "q3": True}
    assert all(v["scale"] == (1, 5) for v in draft.items.values())
    report = check_study(tmp_path, out=tmp_path / "out")
    assert report.problems.empty
    assert report.unlinked["new"].tolist() == [0]  # side 1/2 labelled East/West: all linked


def test_choice_text_exports_get_an_ordered_labelled_scale(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 40
    vocab = ["Strongly disagree", "Disagree", "Neither agree nor disagree", "Agree",
             "Strongly agree"]
    base = rng.normal(0, 1, n)

    def answer(sign: int) -> list[str]:
        points = np.clip(np.rint(3 + sign * base + rng.normal(0, .5, n)), 1, 5).astype(int)
        return [vocab[p - 1] for p in points]

    frame = pd.DataFrame({"participant_code": [f"X{i:03d}" for i in range(n)],
                          "side": np.where(np.arange(n) % 2, "A", "B"),
                          "hope_1": answer(1), "hope_2": answer(1), "hope_3": answer(-1),
                          "submitted_at": "2024-01-10"})
    frame.loc[3, "hope_2"] = "Don't know"
    frame.to_csv(tmp_path / "wave1.csv", index=False)
    draft = init_study(tmp_path)
    text = (tmp_path / "instrument.yaml").read_text()
    assert "labels: {1: Strongly disagree, 2: Disagree, 3: Neither agree nor disagree, " \
        "4: Agree, 5: Strongly agree}" in text
    assert {i: (v["scale"], v["reverse"]) for i, v in draft.items.items()} == {
        "hope_1": ((1, 5), False), "hope_2": ((1, 5), False), "hope_3": ((1, 5), True)}
    assert '"Don\'t know": "don\'t know"' in text  # a missing code, not a scale point
    report = check_study(tmp_path, out=tmp_path / "out")
    assert report.problems.empty  # every choice text is read as its point


def test_categorical_columns_become_attributes_stored_at_ingest(tmp_path: Path, key) -> None:
    from trackii_eval import Study

    rng = np.random.default_rng(2)
    n = 20
    base = rng.normal(0, 1, n)
    for wave, date in ((1, "2024-01-10"), (2, "2025-01-10")):
        pd.DataFrame({
            "participant_code": [f"P{i:03d}" for i in range(n)],
            "side": np.where(np.arange(n) % 2, "A", "B"),
            "arm": np.where(np.arange(n) < 10, "dialogue", "comparison"),
            "sector": np.where(np.arange(n) % 3 == 0, "Government", "civil society"),
            **{f"t_{k}": np.clip(np.rint(4 + base + rng.normal(0, .5, n)), 1, 7).astype(int)
               for k in (1, 2)},
            "submitted_at": date,
        }).to_csv(tmp_path / f"wave{wave}.csv", index=False)
    init_study(tmp_path)
    config, _ = load_study_config(tmp_path / "study.yaml")
    assert config.attributes == {"sector": ["civil society", "Government"]}
    study = Study.load(tmp_path, out=tmp_path / "out")
    assert study.ingest(key).problems.empty
    stored = study.store.query("SELECT value, count(*) AS n FROM participant_attributes "
                               "GROUP BY 1 ORDER BY 1")
    assert stored.to_dict(orient="list") == {"value": ["Government", "civil society"],
                                             "n": [7, 13]}


def test_init_copies_no_one_off_text_and_refuses_to_overwrite(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trackii_eval.cli import app

    rng = np.random.default_rng(4)
    n = 30
    items = {f"t_{k}": np.clip(np.rint(4 + rng.normal(0, 1, n)), 1, 7).astype(object)
             for k in (1, 2)}
    items["t_1"][0] = "call me on +44 20 7946 0000"  # typed into a number field
    items["t_1"][1] = "-99"
    items["t_2"][2] = "-99"
    pd.DataFrame({"participant_code": [f"P{i:03d}" for i in range(n)], **items}).to_csv(
        tmp_path / "wave1.csv", index=False)
    result = CliRunner().invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    drafts = (tmp_path / "study.yaml").read_text() + (tmp_path / "instrument.yaml").read_text()
    assert "7946" not in drafts and "7946" not in result.output
    assert '"-99": missing' in drafts
    again = CliRunner().invoke(app, ["init", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert CliRunner().invoke(app, ["init", str(tmp_path), "--force"]).exit_code == 0
