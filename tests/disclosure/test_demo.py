"""The two recoveries of issue 11 on the demo, attempted by the attacker's LP on the report's
published numbers: with k = 5 (linkage table: 147 - 132 - 13 = 2 ambiguous records in wave 4;
'quarantined 2') and with k = 40 (comparison arm, wave 5: n = 116 - 83 = 33)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from trackii_eval.disclosure import audit
from trackii_eval.report.build import report_tables


def _wave4_file(study) -> str:
    return next(w.file for w in study.config.waves if w.index == 4)


@pytest.mark.parametrize("k", [5, 40])
def test_no_small_cell_of_the_demo_report_can_be_narrowed(demo_run, k: int) -> None:
    study = demo_run[0]
    tables = report_tables(study.store, study.context, k)
    result = tables.publication.protect()
    system = result.system
    small = [j for j, v in enumerate(system.values) if 0 < v < k]
    assert small, "the demo must have small cells at this k"
    assert all(result.suppressed[j] for j in small)
    assert audit(system, result.suppressed, k) == []  # every small count, attacked again
    if k == 5:
        # the recovery: records - exact - fuzzy = ambiguous (a small count) in wave 4
        cell = ("linkage", (4, "ambiguous"))
        assert 0 < system.values[system.index(cell)] < 5
        lo, hi = result.interval(cell)
        assert lo <= 0 and hi >= 5
        lo, hi = result.interval(("files", (_wave4_file(study), "quarantined")))
        assert lo <= 0 and hi >= 5
    else:
        cell = ("response", (5, "comparison"))
        assert system.values[system.index(cell)] == 33
        lo, hi = result.interval(cell)
        assert lo <= 0 and hi >= 40


def test_the_naive_report_was_recoverable(demo_run) -> None:
    """Hiding only the small cells themselves (the old report) lets the attacker recover them."""
    study = demo_run[0]
    result = report_tables(study.store, study.context, 5).publication.protect()
    system = result.system
    only_small = np.array([bool(h) or 0 < v < 5 for h, v in zip(system.hidden, system.values,
                                                                 strict=True)])
    findings = audit(system, only_small, 5)
    recovered = {f.cell: (f.low, f.high) for f in findings}
    cell = ("linkage", (4, "ambiguous"))
    value = float(system.values[system.index(cell)])
    assert 0 < value < 5
    assert recovered[cell] == (value, value)  # recovered exactly by subtraction


def test_rendered_report_hides_what_the_attacker_needed(demo_run) -> None:
    html = demo_run[3].read_text()
    table = html[html.index("baseline people matched"):]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
    wave4 = re.findall(r"<td>([^<]*)</td>", rows[3])
    assert wave4[0] == "4" and wave4[-2] == "x"  # ambiguous suppressed
    assert "x" in wave4[1:3]  # and a complement in the same row (records)
    assert "&lt;5" not in html  # one marker for primary and complementary suppressions


def test_people_who_left_and_model_dfs_are_protected_with_the_counts(demo_run) -> None:
    """Two derived channels a newcomer found: leavers = baseline - retained respondents, and a
    clustered model's df = participants - 1 printed beside a suppressed participant count."""
    study = demo_run[0]
    result = report_tables(study.store, study.context, 5).publication.protect()
    system = result.system
    left = [cid for cid in system.ids if cid[0] == "retention" and cid[1][2] ==
            "left since baseline"]
    assert left, "leavers since baseline take part in the system"
    for cid in left:
        value = system.values[system.index(cid)]
        if 0 < value < 5:
            lo, hi = result.interval(cid)
            assert lo <= 0 and hi >= 5
    dfs = [cid for cid in result.status if cid[0] == "effects" and cid[1][-1] == "df"]
    assert dfs
    for cid in dfs:
        groups = ("model_n", (cid[1][0], "participants"))
        if result.status.get(groups, "published") != "published":
            assert result.status[cid] != "published", cid
