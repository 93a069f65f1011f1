"""One quantity printed in several places is one number to protect (a newcomer's finding).

The demo report printed its participant total as ``x`` in the flow diagram and the methods (it is
the 230 read at baseline plus a few new records, a small cell) and the same 231 as each model's
"865 observations of 231 participants": the hidden total, and with it the small cell, could be
read off another cell id. Counts of the same quantity with the same value must be shown or hidden
together.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from trackii_eval.disclosure import audit
from trackii_eval.report.build import report_tables
from trackii_eval.report.disclose import Publication

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def planned_demo(demo_run):
    """The demo after every stage (the session's shared run): its default plan has the
    durability and attrition tables, which reprint the response table's counts."""
    return demo_run[0]


def _meaning(cid, treated: str, comparison: str | None) -> str | None:
    """What a report cell counts, decided here independently of the report's own tagging."""
    table, key = cid
    if table == "analysed":
        return {"participants": "participants", "participant_waves": "observations"}[key[0]]
    if table == "model_n" and key[-1] in ("participants", "observations"):
        return key[-1]
    if table == "invariance" and key[-1] == "n":
        return "participants"
    if table == "effect_sizes_n" and key[2] is None:  # a whole-study effect size's N
        return "participants"
    if table == "response":
        return f"respondents {key[0]} {key[1]}"
    if table == "attrition_n" and key[-1] == "observed":
        return f"respondents {key[1]} {key[2]}"
    if table == "durability_n":
        return f"respondents {key[1]} {treated if key[2] == 'treated' else comparison}"
    return None


@pytest.mark.parametrize("k", [5, 40])
def test_equal_counts_of_one_quantity_are_shown_or_hidden_together(planned_demo,
                                                                   k: int) -> None:
    """Before the fix, at k = 40 the response table hid wave 2's 131 dialogue respondents
    while the durability and attrition tables printed the same 131."""
    study = planned_demo
    pub = report_tables(study.store, study.context, k).publication
    result = pub.protect()
    groups: dict[tuple[str, float], set] = defaultdict(set)
    for shown in pub.shown:
        cell = pub.tables.cells[shown.id]
        meaning = _meaning(shown.id, study.config.treated_arm, study.config.comparison_arm)
        if cell.kind == "count" and meaning is not None:
            groups[(meaning, cell.value)].add(shown.id)
    tied = {key: ids for key, ids in groups.items() if len(ids) > 1}
    assert tied, "the demo prints the participant total again as a model's N"
    for (meaning, value), ids in tied.items():
        status = {cid: result.hidden(cid) for cid in ids}
        assert len(set(status.values())) == 1, (meaning, value, status)
    # and the rendered value of a suppressed count is printed nowhere under the same meaning
    for (meaning, value), ids in groups.items():
        if any(result.hidden(cid) for cid in ids):
            assert all(result.hidden(cid) for cid in ids), (meaning, value)
    assert audit(result.system, result.suppressed, k) == []


def test_a_count_printed_twice_under_two_ids_is_suppressed_in_both() -> None:
    """Unit: a total that reveals a small part, printed twice; only the quantity ties them."""
    pub = Publication(5)
    base = pub.count("flow", ("baseline",), 230)
    new = pub.count("flow", ("new",), 1)  # a small cell, primary-suppressed
    total = pub.count("flow", ("total",), 231, quantity="participants analysed")
    pub.tables.total(total.id, [base.id, new.id], name="total = baseline + new")
    model = pub.count("model_n", ("m", "participants"), 231, quantity="participants analysed")
    other = pub.count("model_n", ("m2", "participants"), 200, quantity="participants analysed")
    pub.protect()
    assert new.hidden
    assert total.hidden == model.hidden  # one number: both hidden or both shown
    assert total.hidden or base.hidden
    assert str(total) == str(model)
    assert not other.hidden  # a different value of the quantity is a different number
    # without the quantity the same 231 is printed under the model's id: recoverable
    naive = Publication(5)
    b = naive.count("flow", ("baseline",), 230)
    n = naive.count("flow", ("new",), 1)
    t = naive.count("flow", ("total",), 231)
    naive.tables.total(t.id, [b.id, n.id])
    m = naive.count("model_n", ("m", "participants"), 231)
    naive.protect()
    assert n.hidden and (t.hidden or b.hidden)
    assert not m.hidden and str(m) == "231"  # the hidden total, in the clear under another id
