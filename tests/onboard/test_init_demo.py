"""`init` on the demo's exports proposes the demo's constructs, scales and reverse keys.

The demo's instrument.yaml is the truth the exports were simulated from (surveys/demo/
generate.py); `init` sees only the five wave CSVs (no labels, no codebook). The figures it gets
right are asserted exactly, so that a change that makes the guesses worse fails here.
"""

from __future__ import annotations

import shutil
from itertools import combinations
from pathlib import Path

from trackii_eval.config import load_instrument
from trackii_eval.onboard.check import check_study
from trackii_eval.onboard.init import init_study

DEMO = Path(__file__).resolve().parents[2] / "surveys" / "demo"


def test_init_on_demo_exports_recovers_the_demo_instrument(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    shutil.copytree(DEMO / "waves", root / "waves")
    draft = init_study(root)
    truth_inst = load_instrument(DEMO / "instrument.yaml")
    truth = {i: truth_inst.construct_of(i) for i in truth_inst.items}
    assert set(draft.items) == set(truth)  # 23 of 23 items, trust_other_a renamed
    # constructs: every demo construct reproduced with exactly its items (7 of 7)
    proposed = [sorted(m) for m in draft.constructs.values()]
    exact = [c for c, con in truth_inst.constructs.items()
             if sorted(i.id for i in con.items) in proposed]
    assert len(exact) == 7 == len(truth_inst.constructs)
    pairs = list(combinations(sorted(truth), 2))
    same = sum((truth[a] == truth[b]) == (draft.items[a]["construct"] ==
                                          draft.items[b]["construct"]) for a, b in pairs)
    assert same == len(pairs) == 253
    # scales: 22 of 23 ranges; the behavioural count (0-200, observed 0-9) is snapped to 0-10
    wrong = {i for i in truth if draft.items[i]["scale"] != (
        truth_inst.scales[truth_inst.items[i].scale].min,
        truth_inst.scales[truth_inst.items[i].scale].max)}
    assert wrong == {"n_cross_contacts"}
    # reverse keys: 23 of 23 (threat_1, hostile_1, stereotype_1 reversed, nothing else)
    assert {i for i in truth if draft.items[i]["reverse"]} == {
        i for i in truth if truth_inst.items[i].reverse}
    assert {i for i in truth if truth_inst.items[i].reverse} == {
        "threat_1", "hostile_1", "stereotype_1"}
    drafted = load_instrument(root / "instrument.yaml")
    # the four attitude outputs are named as in the demo; the outputs guessed from names are
    # right for 7 of 7 constructs
    for name in ("perceptions", "relationships", "moderation", "ideas"):
        assert sorted(i.id for i in drafted.constructs[name].items) == sorted(
            i.id for i in truth_inst.constructs[name].items)
    output_of = {i: c.output for c in drafted.constructs.values() for i in (x.id for x in c.items)}
    wrong_output = {c for c, con in truth_inst.constructs.items()
                    if output_of[con.items[0].id] != con.output}
    assert wrong_output == set()
    renames = drafted.renames
    assert renames == {w: {"trust_other_a": "trust_other_1"} for w in (3, 4, 5)}
    # the draft is a valid configuration, and its dry run finds what the demo's own does:
    # identifiers declared, nothing quarantined, the same ambiguous links to decide as the
    # demo's own configuration leaves (record by record)
    report = check_study(root, out=tmp_path / "out")
    assert report.problems.empty
    own = check_study(DEMO, out=tmp_path / "own")
    assert len(report.review) > 0
    assert sorted(report.review["record_id"]) == sorted(own.review["record_id"])
    assert report.files["read"].tolist() == [230, 202, 180, 147, 119]
    text = (root / "instrument.yaml").read_text()
    for column in ("name", "email", "phone", "ip_address", "latitude", "longitude",
                   "participant_code"):
        assert f"  - {column}  # REVIEW" in text
