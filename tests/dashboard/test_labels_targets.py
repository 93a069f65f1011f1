"""What the dashboard says its numbers are: the gap chart's method, outputs' names and units,
targets beside what was achieved, and the report's own numbers for the dialogues' gaps."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import pandas as pd

from trackii_eval.config import Funding
from trackii_eval.dashboard.build import _additional_target, _gap_title
from trackii_eval.dashboard.collect import dialogue_change_effects
from trackii_eval.dashboard.meta import random_effects
from trackii_eval.report.labels import Labels

from .test_portfolio import _spec


def _chart(spec: dict, name: str) -> dict:
    for c in spec["vconcat"]:
        if c.get("name") == name:
            return c
    raise AssertionError(f"no chart {name!r}")


def _section(page: str, heading: str) -> str:
    start = page.index(f"<h2>{heading}</h2>")
    return page[start:page.index("<h2>", start + 5)]


def _rows(table_html: str) -> list[list[str]]:
    return [[html.unescape(c) for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", table_html, flags=re.S)]


def test_gap_chart_says_how_the_stored_gaps_were_computed(built):
    dash, out, _ = built
    spec = _spec(out / "dashboard.html")
    title = _chart(spec, "gaps")["title"]
    # the tests' plan names a growth model for perceptions_gaps: its implied gaps
    assert "model-implied by the growth model 'perceptions_durability'" in title
    rows = [g for v in dash.studies for g in v.gaps]
    assert rows and all(g["method"].startswith("model-implied") for g in rows
                        if g["model"] == "perceptions_gaps")
    # a durability entry without ``model:`` stores the model-free difference in mean change
    # (models/plan_tables.durability_tables): the chart must not call it model-based
    free = _gap_title([{"method": "difference in mean change from baseline (model-free)"}])
    assert "model-free" in free and "model-based" not in free


def test_portfolio_summary_names_outputs_and_their_units(built):
    dash, out, studies = built
    page = (out / "dashboard.html").read_text(encoding="utf-8")
    rows = _rows(_section(page, "Portfolio summary"))
    head, body = rows[0], rows[1:]
    assert head[:2] == ["output", "unit of the gap"]
    ctx = {s.context.study_id: s.context for s in studies}
    lab = Labels(ctx["demo"].config, ctx["demo"].instrument)
    codes = set(ctx["demo"].instrument.constructs)
    assert body and not ({r[0] for r in body} & codes)  # no code names
    assert ["Signed up for a cross-side activity (yes/no)", "percentage points"] in [
        r[:2] for r in body]
    # a yes/no output is pooled in percentage points: 100 x the pooling of the proportions
    end = [m for m in dash.meta if m["construct"] == "joint_activity"
           and m["timepoint"] == "end of programme" and m["method"] == "DL"]
    assert len(end) == 1
    frames = []
    for s in studies:
        c = s.context
        e = dialogue_change_effects(s.store.query("SELECT * FROM scores"), "joint_activity", c)
        frames.append(e[e["wave"] == c.config.program_end_wave])
    raw = pd.concat(frames)
    assert len(raw) == end[0]["k"]
    ref = random_effects(raw["estimate"], raw["se"], method="DL", knapp_hartung=False)
    assert lab.unit("joint_activity").factor == 100
    assert math.isclose(end[0]["_raw"].estimate, 100 * ref.estimate, rel_tol=1e-9)
    # the dialogue filter shows names, its values stay ids
    sel = next(p for p in _spec(out / "dashboard.html")["params"] if p["name"] == "dialogue_sel")
    names = {d.id: d.name for d in ctx["demo"].config.dialogues}
    got = dict(zip(sel["bind"]["options"], sel["bind"]["labels"], strict=True))
    assert got["D1"] == names["D1"] != "D1"


def test_targets_show_target_and_achieved_apart(built):
    _, out, _ = built
    page = (out / "dashboard.html").read_text(encoding="utf-8")
    rows = _rows(_section(page, "Cost-effectiveness"))
    head = next(r for r in rows if "achieved" in r)
    assert head == ["study", "dialogue", "target", "target value", "achieved", "result"]
    d1 = {r[2]: r for r in rows if r[:2] == ["demo", "D1"] and len(r) == len(head)}
    # 210,000 EUR over 50 people at baseline: 4,200 achieved against the 4,500 target
    assert d1["cost per participant"][3:] == ["4,500", "4,200", "met"]
    share = d1.get("reliable improver share")
    assert share is not None and share[3] == "30%" and share[4].endswith("%")


def test_additional_improver_target_key_and_its_former_name():
    new = Funding(costs={"D1": 1.0}, targets={"cost_per_additional_improver": 15000})
    old = Funding(costs={"D1": 1.0}, targets={"cost_per_reliable_improver": 12000})
    assert _additional_target(new.targets) == 15000
    assert _additional_target(old.targets) == 12000
    assert _additional_target(Funding().targets) is None


def test_dialogue_gap_is_the_reports_stored_number(built):
    dash, out, studies = built
    demo = next(s for s in studies if s.context.study_id == "demo")
    end = demo.context.config.program_end_wave
    stored = pd.DataFrame(demo.store.results()["perceptions_subgroups"]["tables"]["effects"])
    d1 = stored[(stored["moderator"] == "dialogue") & (stored["level"] == "D1")].iloc[0]
    spec = _spec(out / "dashboard.html")
    forest = next(rows for rows in spec["datasets"].values()
                  if rows and "kind" in rows[0] and "timepoint" in rows[0])
    row = next(r for r in forest if r["label"] == "demo · D1" and r["construct"] == "perceptions"
               and r["timepoint"] == "end of programme")
    # the stored Welch interval, as the report prints it; not estimate +- 1.96 se
    assert row["ci_low"] == float(f"{d1['ci_low']:.2f}")
    assert row["ci_high"] == float(f"{d1['ci_high']:.2f}")
    assert row["estimate"] == float(f"{d1['estimate']:.2f}")
    effects = [e for e in next(v for v in dash.studies if v.study == "demo").dialogue_effects
               if e["dialogue"] == "D1" and e["construct"] == "perceptions" and e["wave"] == end]
    assert str(effects[0]["ci_low"]) == f"{d1['ci_low']:.2f}"


def test_readme_names_the_target_key_the_code_reads():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert "cost_per_additional_improver" in text
    assert "model-based gap at each follow-up" not in text
