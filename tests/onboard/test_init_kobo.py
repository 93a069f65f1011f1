"""`init` with a KoboToolbox XLSForm: choice names that are codes become a per-wave recode."""

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
