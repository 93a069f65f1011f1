"""Callaway-Sant'Anna on the demo study and through the analysis plan."""

from __future__ import annotations

import json

import pytest

from trackii_eval.analysis import FITTERS, ModelSpec
from trackii_eval.errors import ModelError
from trackii_eval.models.did import callaway_santanna

from ..conftest import DEMO


def test_callaway_santanna_covers_demo_gaps(demo_run) -> None:
    study = demo_run[0]
    wide = study.scores()
    data = wide.assign(cohort=(wide["treated"] == 1) * 2)  # the programme runs after wave 1
    gaps = json.loads((DEMO / "truth.json").read_text())["effects"]["perceptions"][
        "gap_at_each_wave"]
    fit = callaway_santanna(data, "perceptions")
    tab = fit.tidy().set_index("term")
    covered = [tab.loc[f"ATT(g=2,t={w})", "ci_low"] <= gaps[str(w)]
               <= tab.loc[f"ATT(g=2,t={w})", "ci_high"] for w in (2, 3, 4, 5)]
    assert sum(covered) >= 3, tab  # 95% intervals: one miss in four allowed
    # a single pre-treatment wave: no lead, so no pre-trend test, said so
    assert "statistic" not in fit.pretest and "single pre-treatment wave" in fit.pretest["note"]
    # attrition: the balanced panel drops people, and the fit says how many
    assert any("were dropped (balanced panel" in w for w in fit.warnings)
    # through the plan's FITTERS table
    spec = ModelSpec(name="p_did", kind="did", outcome="perceptions")
    via_plan = FITTERS["did"](spec, data)
    assert via_plan.kind == "did" and "simple" in via_plan.terms
    with pytest.raises(ModelError, match="needs a 'cohort' column"):
        FITTERS["did"](spec, wide.drop(columns=["cohort"], errors="ignore"))
