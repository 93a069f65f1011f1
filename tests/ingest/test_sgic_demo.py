"""Linkage of the demo study by self-generated codes: against the generator's truth, zero
wrong links; ambiguous records are quarantined, listed, and resolved by the evaluator's file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from trackii_eval import Study
from trackii_eval.ingest.linkage import link_records, score_linkage
from trackii_eval.ingest.sgic import LINKAGE_REVIEW_FILE, link_study

from ..conftest import DEMO


def _records_and_truth(study: Study) -> tuple[pd.DataFrame, pd.Series]:
    """Every wave record with its typed code and the true person (the assigned code)."""
    rows = []
    for wave in study.config.waves:
        frame = pd.read_csv(study.root / wave.file, dtype=str, keep_default_na=False)
        for i, rec in frame.iterrows():
            rows.append({
                "record_id": f"{wave.file}:row {i + 2}", "wave": wave.index,
                "code": rec["sgic"], "side": rec["side"], "dialogue": rec["dialogue"] or None,
                "truth": rec["participant_code"],
            })
    records = pd.DataFrame(rows)
    return records, records.set_index("record_id")["truth"]


def test_demo_linkage_makes_no_wrong_link(tmp_path: Path, key) -> None:
    study = Study.load(DEMO, out=tmp_path)
    linkage = link_study(study, key)
    records, truth = _records_and_truth(study)
    scored = score_linkage(records, linkage.result.person, truth)
    assert scored["false_links"] == 0
    stats = linkage.result.stats
    assert stats["n_fuzzy"] > 0  # the generator's typos were found ...
    assert stats["n_ambiguous"] > 0  # ... and some were left for the evaluator
    # better than naive exact matching on the typed codes, which misses every typo
    spec = [e.model_dump() for e in study.config.linkage.elements]
    naive = link_records(records.drop(columns="truth"), spec, fuzzy=False,
                         review_possible_matches=False)
    naive_scored = score_linkage(records, naive.person, truth)
    last = max(scored["match_rate_by_wave"])
    assert scored["match_rate_by_wave"][last] > naive_scored["match_rate_by_wave"][last]


def test_ambiguous_records_are_quarantined_and_decisions_resolve_them(tmp_path: Path,
                                                                    key) -> None:
    study_dir = tmp_path / "study"
    shutil.copytree(DEMO, study_dir)
    study = Study.load(study_dir, out=tmp_path / "out")
    summary = study.ingest(key)
    ambiguous = summary.problems[summary.problems["rule"] == "ambiguous_link"]
    assert len(ambiguous) == int(summary.linkage["ambiguous"].sum()) > 0
    table = summary.table
    assert (table["rows_read"] == table["rows_stored"] + table["rows_quarantined"]).all()
    review = pd.read_csv(tmp_path / "out" / LINKAGE_REVIEW_FILE, dtype=str,
                         keep_default_na=False, encoding="utf-8-sig")
    text = review.to_csv()
    assert "CNRY-" not in text  # the review file shows record IDs and pseudonyms only
    for code in pd.read_csv(study_dir / "waves" / "wave1_baseline.csv")["sgic"]:
        assert code not in text
    # the evaluator decides: every open record is a new person. A new person near others can
    # make a later record ambiguous in turn (it now has two candidates), so decide until done.
    for _ in range(5):
        review.loc[review["decision"] == "", "decision"] = "new"
        review.to_csv(tmp_path / "out" / LINKAGE_REVIEW_FILE, index=False, encoding="utf-8-sig")
        again = study.ingest(key)
        review = pd.read_csv(tmp_path / "out" / LINKAGE_REVIEW_FILE, dtype=str,
                             keep_default_na=False, encoding="utf-8-sig")
        if not (again.problems["rule"] == "ambiguous_link").any():
            break
    assert not (again.problems["rule"] == "ambiguous_link").any()
    assert again.table["rows_stored"].sum() == table["rows_stored"].sum() + len(ambiguous)
    n_sub = study.store.query("SELECT count(*) AS n FROM submissions")["n"][0]
    assert n_sub == again.table["rows_stored"].sum()  # relinking replaced, not duplicated
    study.close()
