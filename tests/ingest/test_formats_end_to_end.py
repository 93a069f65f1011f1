"""The same wave exported as SPSS, Stata and Qualtrics files ingests to the same responses as the
plain CSV: value labels and declared missing values survive, platform test and unfinished
responses are kept but flagged and excluded from scoring."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from trackii_eval import Study

from ..conftest import DEMO

WAVE = "waves/wave1_baseline.csv"
CODES = {"Don't know": -98, "Prefer not to say": -99, "-98": -98, "-99": -99}


def _study_with(tmp_path: Path, name: str, writer) -> Path:
    root = tmp_path / name
    shutil.copytree(DEMO, root)
    frame = pd.read_csv(DEMO / WAVE, dtype=str, keep_default_na=False)
    target = writer(frame, root / "waves")
    text = (root / "study.yaml").read_text().replace(WAVE, f"waves/{target.name}")
    (root / "study.yaml").write_text(text)
    return root


def _numeric_items(frame: pd.DataFrame, study: Study) -> list[str]:
    return [c for c in frame.columns if c in study.instrument.items]


def _to_numbers(frame: pd.DataFrame, items: list[str]) -> pd.DataFrame:
    out = frame.copy()
    for c in items:
        out[c] = [np.nan if v == "" else CODES.get(v, v) for v in out[c]]
        out[c] = pd.to_numeric(out[c])
    return out


def _write_spss(frame: pd.DataFrame, folder: Path) -> Path:
    study = Study.load(DEMO)
    items = _numeric_items(frame, study)
    data = _to_numbers(frame, items)
    path = folder / "wave1_baseline.sav"
    pyreadstat.write_sav(
        data, str(path),
        variable_value_labels={c: {-98: "Don't know", -99: "Refused"} for c in items},
        missing_ranges={c: [-99, -98] for c in items},
    )
    return path


def _write_stata(frame: pd.DataFrame, folder: Path) -> Path:
    study = Study.load(DEMO)
    items = _numeric_items(frame, study)
    data = _to_numbers(frame, items)
    path = folder / "wave1_baseline.dta"
    # Stata has no user-missing numbers: refusals go out as NaN here, as the platforms do
    for c in items:
        data[c] = data[c].where(data[c] >= 0)
    pyreadstat.write_dta(data, str(path))
    return path


def _write_qualtrics(frame: pd.DataFrame, folder: Path) -> Path:
    meta = pd.DataFrame({
        "StartDate": frame["submitted_at"], "EndDate": frame["submitted_at"],
        "Status": "IP Address", "IPAddress": frame["ip_address"], "Progress": "100",
        "Finished": "True", "RecordedDate": frame["submitted_at"],
        "ResponseId": frame["ResponseId"], "RecipientEmail": frame["email"],
        "DistributionChannel": "anonymous",
    })
    meta.loc[3, "DistributionChannel"] = "preview"   # a preview the team forgot to delete
    meta.loc[5, ["Finished", "Progress"]] = ["False", "60"]  # broke off
    body = pd.concat([meta, frame.drop(columns=["ResponseId", "submitted_at"])], axis=1)
    text_row = {c: f"Question text of {c}" for c in body.columns}
    import_row = {c: json.dumps({"ImportId": f"QID_{c}"}) for c in body.columns}
    full = pd.concat([pd.DataFrame([text_row, import_row]), body], ignore_index=True)
    path = folder / "wave1_qualtrics.csv"
    full.to_csv(path, index=False, encoding="utf-8-sig")
    return path


def _stored(study: Study) -> pd.DataFrame:
    frame = study.store.query("""
        SELECT s.participant, r.item, r.value, r.missing_code, s.excluded_reason
        FROM responses r JOIN submissions s ON s.participant = r.participant
             AND s.wave = r.wave AND s.sha256 = r.sha256
        WHERE r.wave = 1 ORDER BY 1, 2
    """)
    return frame.set_index(["participant", "item"])


@pytest.fixture(scope="module")
def csv_responses(tmp_path_factory, key) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("csv")
    study = Study.load(DEMO, out=out)
    study.ingest(key)
    stored = _stored(study)
    study.close()
    return stored


@pytest.mark.parametrize(("name", "writer", "fmt"), [
    ("spss", _write_spss, "spss"), ("stata", _write_stata, "stata"),
    ("qualtrics", _write_qualtrics, "qualtrics"),
])
def test_same_responses_as_csv(tmp_path: Path, key, csv_responses: pd.DataFrame, name: str,
                               writer, fmt: str) -> None:
    root = _study_with(tmp_path, name, writer)
    study = Study.load(root, out=tmp_path / f"out_{name}")
    summary = study.ingest(key)
    wave1 = summary.table.set_index("wave").loc[1]
    assert study.store.query("SELECT format FROM files WHERE wave = 1")["format"][0] == fmt
    assert wave1["rows_read"] == 230
    assert wave1["rows_read"] == wave1["rows_stored"] + wave1["rows_quarantined"]
    stored = _stored(study)
    common = stored.index.intersection(csv_responses.index)
    assert len(common) == len(csv_responses)
    np.testing.assert_array_equal(stored.loc[common, "value"].to_numpy(dtype=float),
                                  csv_responses.loc[common, "value"].to_numpy(dtype=float))
    # a refusal is a missing code, never a number on the scale, in every format
    assert (stored["value"].dropna() >= 0).all()
    refused = csv_responses["missing_code"].isin(["refused", "don't know"])
    if fmt == "spss":
        codes = stored.loc[common[refused.loc[common].to_numpy()], "missing_code"]
        assert set(codes.str.casefold()) <= {"refused", "don't know"}
    excluded = stored.groupby(level="participant")["excluded_reason"].first().dropna()
    if fmt == "qualtrics":
        assert sorted(excluded.str.split(" ").str[0]) == ["test", "unfinished"]
        scores = study.scores(long=True)
        assert not scores["participant"].isin(excluded.index).any() or (
            scores[scores["participant"].isin(excluded.index)]["wave"] != 1).all()
    else:
        assert excluded.empty
    study.close()
