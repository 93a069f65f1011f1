"""The funder's portfolio dashboard: one self-contained HTML file over several study stores.

Framework: Vega-Lite through Altair, with vega, vega-lite and vega-embed inlined from
``vl-convert-python`` (which ships the JavaScript bundle inside its wheel). Chosen because the
file opens offline with no server and no external script (a funder can e-mail it), the filters
are Vega-Lite parameters bound to dropdowns (no custom JavaScript to maintain), the chart
specification is data (JSON a test can read), and both packages are pure wheels from PyPI.
Plotly would inline ~3.5 MB and needs callbacks for cross-chart filters; Dash, Panel or
Streamlit need a running server, which an offline file for a funder cannot have.

Safe to publish: the file holds the numbers of every filter combination, so all of them are
registered, with the studies' reports, in one :class:`~trackii_eval.report.disclose.Publication`
and protected by one decision (:func:`build_dashboard`); the reports published with the
dashboard are re-rendered from that same decision (``reports/<study>/report.html`` and its
per-dialogue pages beside it).
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from ..errors import ReportError
from ..pipeline.context import StudyContext
from ..report.build import ReportTables, render_reports, report_tables
from ..report.disclose import Publication, Shown
from ..report.labels import Labels
from ..store import Store
from .collect import ALL, StudyView, collect_study
from .cost import cost_per_additional_improver, target_status
from .meta import random_effects
from .publication import scoped

__all__ = ["Dashboard", "PortfolioStudy", "build_dashboard", "dashboard_data", "portfolio_tables"]


@dataclass(frozen=True)
class PortfolioStudy:
    """A study of the portfolio: its store (scores and model results) and context."""

    store: Store
    context: StudyContext


@dataclass
class Dashboard:
    """The registered portfolio: studies' views, reports' tables, summaries, the publication."""

    publication: Publication
    studies: list[StudyView]
    reports: dict[str, ReportTables]
    meta: list[dict[str, Any]] = field(default_factory=list)
    costs: list[dict[str, Any]] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)


def _timepoint(ctx: StudyContext, wave: int) -> str | None:
    """The wave's place relative to the end of the programme (comparable across studies)."""
    end = ctx.config.program_end_wave
    idx = [w.index for w in ctx.config.waves]
    if end is None or wave not in idx:
        return None
    pos = idx.index(wave) - idx.index(end)
    if pos < 0:
        return None
    return "end of programme" if pos == 0 else f"follow-up {pos}"


def _labels(ctx: StudyContext) -> Labels:
    """The report's labels of a study (outcome names and units from its instrument)."""
    return Labels(ctx.config, ctx.instrument)


def _pool(pub: Publication, per_study: dict[str, tuple[StudyContext, pd.DataFrame]]
          ) -> list[dict[str, Any]]:
    """Random-effects meta-analyses across all dialogues of the portfolio, per construct and
    time point relative to the programme's end (REML with Knapp-Hartung, REML, DL)."""
    frames = []
    for sid, (ctx, eff) in per_study.items():
        if eff.empty:
            continue
        eff = eff.assign(study=sid, timepoint=[_timepoint(ctx, int(w)) for w in eff["wave"]])
        frames.append(eff[eff["timepoint"].notna()])
    if not frames:
        return []
    eff = pd.concat(frames, ignore_index=True)
    out = []
    for (construct, tp), g in eff.groupby(["construct", "timepoint"], sort=True):
        if len(g) < 2:
            continue
        # the outcome's label and unit as the report prints them (a yes/no share: percentage
        # points, so the stored proportions and their errors are scaled by 100 before pooling)
        # (the per-dialogue effects are already in that unit: see collect._dialogue_effects)
        lab = _labels(next(ctx for sid, (ctx, _) in per_study.items()
                           if sid in set(g["study"])))
        unit = lab.unit(construct)
        n = int(g["n_dialogue"].sum())  # people in the dialogues pooled (comparison arms aside)
        key = (construct, tp)
        rows = []
        for method, kh in (("REML", True), ("REML", False), ("DL", False)):
            r = random_effects(g["estimate"], g["se"], method=method, knapp_hartung=kh)
            name = f"{method}{' + Knapp-Hartung' if kh else ''}"

            def st(f: str, text: str, name: str = name, key: tuple = key, n: int = n) -> Shown:
                return pub.stat("portfolio_meta", (*key, name, f), n, text)

            rows.append({
                "construct": construct, "timepoint": tp, "method": name, "k": r.k,
                "output": lab.construct(construct), "unit": unit.effect,
                "estimate": st("estimate", f"{r.estimate:.2f}"),
                "ci_low": st("ci_low", f"{r.ci_low:.2f}"),
                "ci_high": st("ci_high", f"{r.ci_high:.2f}"),
                "p": st("p", "<0.001" if r.p < 0.001 else f"{r.p:.3f}"),
                "tau2": st("tau2", f"{r.tau2:.2f}"), "i2": st("i2", f"{r.i2:.0f}"),
                "q": st("q", f"{r.q:.2f}"), "q_p": st("q_p", f"{r.q_p:.3f}"),
                "dialogues": [{"study": s, "dialogue": d, "wave": int(w)}
                              for s, d, w in zip(g["study"], g["dialogue"], g["wave"],
                                                 strict=True)],
                "_raw": r,
            })
        out.extend(rows)
    return out


def _additional_target(targets: dict[str, float]) -> float | None:
    """The funder's target for the cost per ADDITIONAL reliable improver (beyond the
    comparison group's rate). ``cost_per_reliable_improver`` is the former name of the key,
    read the same way (it was always judged against the additional improvers)."""
    if "cost_per_additional_improver" in targets:
        return targets["cost_per_additional_improver"]
    return targets.get("cost_per_reliable_improver")


def _costs(pub: Publication, views: dict[str, StudyView],
           per_study: dict[str, tuple[StudyContext, pd.DataFrame, pd.DataFrame, Store]]
           ) -> list[dict[str, Any]]:
    """Cost-effectiveness per dialogue where ``funding.costs`` declares its cost."""
    out = []
    for sid, (ctx, eff, improvers, _store) in per_study.items():
        funding = ctx.config.funding
        if funding is None or not funding.costs:
            continue
        view = views[sid]
        cfg = ctx.config
        first = cfg.waves[0].index
        end = cfg.program_end_wave or cfg.waves[-1].index
        ideas = {(r["dialogue"], r["stage"]): r["ideas"] for r in view.ideas}
        targets = funding.targets
        for d, cost in funding.costs.items():
            base = view.cells.get(("respondents", first, cfg.treated_arm, d, ALL))
            row: dict[str, Any] = {"study": sid, "dialogue": d, "currency": funding.currency,
                                   "cost": f"{cost:,.0f}"}
            n0 = int(base.text) if base is not None else 0
            row["per_participant"] = pub.stat(
                "dash_cost", (d, "per_participant"), n0, f"{cost / n0:,.0f}" if n0 else "–",
                depends=[base.id] if base is not None else []) if n0 else "–"
            transferred = ideas.get((d, "transferred"), 0) + 0
            row["per_transferred_idea"] = f"{cost / transferred:,.0f}" if transferred else "–"
            row["per_improver"] = row["per_additional_improver"] = "–"
            row["interval"] = "–"
            row["targets"] = []
            if "cost_per_participant" in targets and n0 and base is not None:
                t = targets["cost_per_participant"]
                # met/missed bounds the count it divides by: hidden with it
                row["targets"].append(("cost per participant", pub.stat(
                    "dash_cost", (d, "target_participant"), n0,
                    target_status(cost / n0, cost / n0, t, lower_is_better=True),
                    depends=[base.id]), f"{t:,.0f}", row["per_participant"]))
            if not improvers.empty:
                imp = improvers[(improvers["construct"] == "perceptions")
                                & (improvers["wave"] == end)]
                dr = imp[(imp["by"] == "dialogue") & (imp["group"].astype(str) == d)]
                cr = imp[(imp["by"] == "arm") & (imp["group"] == cfg.comparison_arm)]
                if len(dr) == 1 and len(cr) == 1:
                    dr, cr = dr.iloc[0], cr.iloc[0]
                    model = str(dr["model"])
                    key_d = (model, "dialogue", d, int(end))
                    key_c = (model, "arm", str(cfg.comparison_arm), int(end))
                    dep = [(f"{sid}/reliable_change", (*key, what))
                           for key in (key_d, key_c) for what in ("n", "improved")]
                    nd, xd = int(dr["n"]), int(dr["n_improved"])
                    nc, xc = int(cr["n"]), int(cr["n_improved"])
                    n = min(nd, nc)
                    if xd:
                        row["per_improver"] = pub.stat("dash_cost", (d, "per_improver"), n,
                                                       f"{cost / xd:,.0f}", depends=dep[:2])
                    ri = cost_per_additional_improver(cost, nd, xd, nc, xc)

                    def money(x: float) -> str:
                        return "unbounded" if not math.isfinite(x) else f"{x:,.0f}"

                    row["per_additional_improver"] = pub.stat(
                        "dash_cost", (d, "per_additional"), n, money(ri.estimate), depends=dep)
                    row["interval"] = pub.stat(
                        "dash_cost", (d, "per_additional_ci"), n,
                        f"[{money(ri.low)}, {money(ri.high)}]", depends=dep)
                    t = _additional_target(targets)
                    if t is not None:
                        row["targets"].append(("cost per additional reliable improver",
                                               pub.stat("dash_cost", (d, "target_rc"), n,
                                                        target_status(ri.low, ri.high, t,
                                                                      lower_is_better=True),
                                                        depends=dep), f"{t:,.0f}",
                                               row["per_additional_improver"]))
                    if "reliable_improver_share" in targets:
                        t = targets["reliable_improver_share"]
                        from scipy import stats as sps
                        lo, hi = sps.beta.ppf([0.025, 0.975], xd + 0.5, nd - xd + 0.5)
                        achieved = pub.share(
                            "dash_cost", (d, "share_achieved"), xd, nd,
                            f"{100 * xd / nd:.0f}%", depends=dep[:2])
                        row["targets"].append(("reliable improver share",
                                               pub.stat("dash_cost", (d, "target_share"), n,
                                                        target_status(lo, hi, t,
                                                                      lower_is_better=False),
                                                        depends=dep[:2]), f"{100 * t:.0f}%",
                                               achieved))
            if "perception_gap" in targets and not eff.empty:
                g = eff[(eff["construct"] == "perceptions") & (eff["wave"] == end)
                        & (eff["dialogue"] == d)]
                if len(g) == 1:
                    g = g.iloc[0]
                    t = targets["perception_gap"]
                    ng = int(min(g["n_dialogue"], g["n_comparison"]))
                    row["targets"].append(("perception gap at the end of the programme",
                                           pub.stat("dash_cost", (d, "target_gap"), ng,
                                                    target_status(g["ci_low"], g["ci_high"], t,
                                                                  lower_is_better=False)),
                                           f"{t:g} POMP points",
                                           pub.stat("dash_cost", (d, "gap_achieved"), ng,
                                                    f"{g['estimate']:.1f} POMP points")))
            out.append(row)
    return out


def portfolio_tables(studies: list[PortfolioStudy], k: int | None = None) -> Dashboard:
    """Register every number of the dashboard and of the studies' reports in one publication.

    Parameters
    ----------
    studies : list of PortfolioStudy
        The portfolio (distinct study ids).
    k : int, optional
        Minimum cell size; default the largest ``privacy.min_cell_size`` of the studies (the
        strictest rule binds all of them, since they are published together).

    Returns
    -------
    Dashboard
        Not yet protected: call ``dashboard.publication.protect()``.

    Raises
    ------
    ReportError
        No studies, a study id given twice, or a store without scores or model results.
    """
    if not studies:
        raise ReportError("dashboard: no study given; name one or more study folders")
    ids = [s.context.study_id for s in studies]
    if len(set(ids)) != len(ids):
        raise ReportError(f"dashboard: study ids must be distinct, got {ids}")
    k = max(s.context.config.privacy.min_cell_size for s in studies) if k is None else k
    pub = Publication(k)
    views: dict[str, StudyView] = {}
    reports: dict[str, ReportTables] = {}
    effects: dict[str, tuple[StudyContext, pd.DataFrame]] = {}
    cost_in: dict[str, tuple[StudyContext, pd.DataFrame, pd.DataFrame, Store]] = {}
    from ..pipeline.provenance import last_run

    for s in studies:
        sp = scoped(pub, s.context.study_id)
        reports[s.context.study_id] = report_tables(
            s.store, s.context, model_run=last_run(s.store, "model"), publication=sp)
        view, raw = collect_study(s.store, s.context, sp)
        views[s.context.study_id] = view
        effects[s.context.study_id] = (s.context, raw["effects"])
        cost_in[s.context.study_id] = (s.context, raw["effects"], raw["improvers"], s.store)
    dash = Dashboard(pub, list(views.values()), reports)
    dash.meta = _pool(pub, effects)
    dash.costs = _costs(pub, views, cost_in)
    return dash


# --- rendering ------------------------------------------------------------------------------

def _value(x: Any, marker: str) -> Any:
    """A registered number as JSON: a float, or ``None`` when suppressed or missing."""
    if isinstance(x, Shown):
        text = str(x)
        if text == marker or text in ("–", ""):
            return None
        try:
            return float(text.replace(",", ""))
        except ValueError:
            return text
    return x


def _records(rows: list[dict[str, Any]], study: str, marker: str) -> list[dict[str, Any]]:
    return [{"study": study, **{k: _value(v, marker) for k, v in r.items()}} for r in rows]


def _series_label(r: dict[str, Any]) -> str:
    who = ("comparison" if r["dialogue"] == "comparison" else
           "all dialogues" if r["dialogue"] == ALL else str(r["dialogue"]))
    return f"{r['study']} · {who}" + ("" if r["side"] == ALL else f" · {r['side']}")


def dashboard_data(dash: Dashboard) -> dict[str, list[dict[str, Any]]]:
    """Every dataset the HTML embeds, suppressed values as ``None`` (after protection).

    Raises
    ------
    ReportError
        If the publication has not been protected yet.
    """
    if dash.publication.result is None:
        raise ReportError("dashboard: protect the publication before reading its data")
    marker = dash.publication.result.marker
    data: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "means", "respondents", "gaps", "dialogue_effects", "improvers", "ideas", "network")}
    for v in dash.studies:
        for name in data:
            data[name].extend(_records(getattr(v, name), v.study, marker))
    for r in data["means"]:
        r["series"] = _series_label(r)
    for r in data["respondents"]:
        r["series"] = _series_label(r)
    k = dash.publication.k
    for r in data["improvers"]:
        r["label"] = f"{r['study']} · {r['group']}"
        # an absent count of a group of k or more is hidden to protect a smaller one (the
        # reports' side-by-arm counts of improvers); say so rather than leave a bare null
        r["note"] = ("" if r["n_improved"] is not None else
                     f"suppressed: it would let a count of fewer than {k} be computed"
                     if r["n"] is not None else f"suppressed: fewer than {k} people")
    data["means"] = [r for r in data["means"] if r["mean"] is not None]
    shown = {(r["study"], r["construct"], r["dialogue"], r["wave"]): r
             for r in data["dialogue_effects"]}
    forest = []
    for m in dash.meta:
        if not m["method"].startswith("REML + "):
            continue
        for d in m["dialogues"]:
            # the dialogue's registered (published) numbers and its own Welch interval, the
            # ones its report prints; not a normal interval recomputed from the standard error
            e = shown.get((d["study"], m["construct"], d["dialogue"], d["wave"]))
            if e is None or e["estimate"] is None:
                continue
            forest.append({"construct": m["construct"], "timepoint": m["timepoint"],
                           "label": f"{d['study']} · {d['dialogue']}", "kind": "dialogue",
                           "estimate": e["estimate"], "ci_low": e["ci_low"],
                           "ci_high": e["ci_high"]})
    for m in dash.meta:
        est = _value(m["estimate"], marker)
        if est is None:
            continue
        forest.append({"construct": m["construct"], "timepoint": m["timepoint"],
                       "label": f"pooled ({m['method']})", "kind": "pooled", "estimate": est,
                       "ci_low": _value(m["ci_low"], marker),
                       "ci_high": _value(m["ci_high"], marker)})
    data["forest"] = forest
    return data


def _gap_title(rows: list[dict[str, Any]]) -> str:
    """The gap chart's title, naming how the stored analyses computed the gaps it shows."""
    methods = sorted({str(r.get("method")) for r in rows if r.get("method")})
    how = methods[0] if len(methods) == 1 else (
        " or ".join(methods) + " (each point's tooltip says which)")
    return ("Effect: gap between the arms at each wave after baseline (95% CI), from the "
            f"stored durability results: {how}")


def _charts(data: dict[str, list[dict[str, Any]]], studies: list[str],
            constructs: list[str], dialogue_names: dict[str, str] | None = None,
            output_names: dict[str, str] | None = None) -> dict[str, Any]:
    """One Vega-Lite specification: every chart, filtered by shared dropdown parameters."""
    import altair as alt

    dialogues = sorted({r["dialogue"] for r in data["means"]} - {ALL, "comparison"})
    sides = sorted({r["side"] for r in data["means"]} - {ALL})
    waves = sorted({r["wave"] for r in data["respondents"]})
    p_study = alt.param(name="study_sel", value=None, bind=alt.binding_select(
        options=[None, *studies], labels=["all studies", *studies], name="Study "))
    names = dialogue_names or {}
    p_dialogue = alt.param(name="dialogue_sel", value=ALL, bind=alt.binding_select(
        options=[ALL, *dialogues], labels=["all dialogues", *(names.get(d, d) for d in dialogues)],
        name="Dialogue "))
    p_side = alt.param(name="side_sel", value=ALL, bind=alt.binding_select(
        options=[ALL, *sides], labels=["both sides", *sides], name="Side "))
    p_wave = alt.param(name="wave_sel", value=None, bind=alt.binding_select(
        options=[None, *waves], labels=["all waves", *(f"wave {w}" for w in waves)],
        name="Wave "))
    default = "perceptions" if "perceptions" in constructs else constructs[0]
    p_output = alt.param(name="output_sel", value=default, bind=alt.binding_select(
        options=constructs, labels=[(output_names or {}).get(c, c) for c in constructs],
        name="Output "))
    f_study = "(study_sel == null || datum.study == study_sel)"
    f_dialogue = ("(dialogue_sel == 'all' ? (datum.dialogue == 'all' || datum.dialogue == "
                  "'comparison') : (datum.dialogue == dialogue_sel || "
                  "datum.dialogue == 'comparison'))")
    f_dialogue_only = "(dialogue_sel == 'all' || datum.dialogue == dialogue_sel)"
    f_side = "(datum.side == side_sel)"
    f_wave = "(wave_sel == null || datum.wave == wave_sel)"
    f_output = "(datum.construct == output_sel)"
    width = 620

    def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
        return pd.DataFrame(rows) if rows else pd.DataFrame({"study": []})

    means = alt.Chart(frame(data["means"])).transform_filter(
        " && ".join([f_study, f_dialogue, f_side, f_output])).encode(
        x=alt.X("time:Q", title="years since baseline"),
        color=alt.Color("series:N", title="group"))
    trajectories = alt.layer(
        means.mark_area(opacity=0.15).encode(y="ci_low:Q", y2="ci_high:Q"),
        means.mark_line(point=True).encode(
            y=alt.Y("mean:Q", title="observed mean (POMP 0-100 or own units)"),
            tooltip=["study:N", "series:N", "wave_label:N", alt.Tooltip("mean:Q", format=".1f"),
                     alt.Tooltip("ci_low:Q", format=".1f"),
                     alt.Tooltip("ci_high:Q", format=".1f")]),
    ).properties(width=width, height=260, title="Outputs over time: observed means "
                 "(groups of at least k people)", name="trajectories")
    gaps_base = alt.Chart(frame(data["gaps"])).transform_filter(
        " && ".join([f_study, f_output, f_wave])).encode(
        x=alt.X("time:Q", title="years since baseline"),
        color=alt.Color("study:N"))
    gaps = alt.layer(
        gaps_base.mark_rule().encode(y="ci_low:Q", y2="ci_high:Q"),
        gaps_base.mark_point(filled=True, size=70).encode(
            y=alt.Y("estimate:Q", title="gap: dialogue minus comparison"),
            tooltip=["study:N", "source:N", "method:N", "wave_label:N",
                     alt.Tooltip("estimate:Q", format=".2f"),
                     alt.Tooltip("ci_low:Q", format=".2f"), alt.Tooltip("ci_high:Q",
                                                                         format=".2f")]),
    ).properties(width=width, height=200, title=_gap_title(data["gaps"]), name="gaps")
    deff_base = alt.Chart(frame(data["dialogue_effects"])).transform_filter(
        " && ".join([f_study, f_output, f_wave, f_dialogue_only])).encode(
        x=alt.X("time:Q", title="years since baseline"),
        color=alt.Color("dialogue:N"))
    dialogue_gaps = alt.layer(
        deff_base.mark_rule().encode(y="ci_low:Q", y2="ci_high:Q"),
        deff_base.mark_point(filled=True, size=60).encode(
            y=alt.Y("estimate:Q", title="change gap vs comparison"),
            tooltip=["study:N", "dialogue:N", "wave:O", alt.Tooltip("estimate:Q", format=".2f"),
                     alt.Tooltip("ci_low:Q", format=".2f"), alt.Tooltip("ci_high:Q",
                                                                         format=".2f")]),
    ).properties(width=width, height=200, title="Per dialogue: change since baseline minus the "
                 "comparison group's (95% CI)", name="dialogue_gaps")
    forest_base = alt.Chart(frame(data["forest"])).transform_filter(
        f_output + " && datum.timepoint == 'end of programme'").encode(
        y=alt.Y("label:N", sort=None, title=None), color=alt.Color("kind:N", title=None))
    forest = alt.layer(
        forest_base.mark_rule().encode(x="ci_low:Q", x2="ci_high:Q"),
        forest_base.mark_point(filled=True, size=80).encode(
            x=alt.X("estimate:Q", title="gap at the end of the programme"),
            shape=alt.Shape("kind:N"), tooltip=["label:N", alt.Tooltip("estimate:Q",
                                                                        format=".2f")]),
    ).properties(width=width, height=180, title="Portfolio: dialogues and the random-effects "
                 "pooled effect", name="forest")
    improvers = alt.Chart(frame(data["improvers"])).transform_filter(
        " && ".join([f_study, f_output, f_wave, f_dialogue])).mark_bar().encode(
        x=alt.X("share_pct:Q", title="reliably improved (%)"),
        y=alt.Y("label:N", title=None), color=alt.Color("study:N"), row=alt.Row("wave:O"),
        tooltip=["study:N", "group:N", "wave:O", "n:Q", "n_improved:Q", "share_pct:Q",
                 "note:N"],
    ).properties(width=width - 120, height=60, title="Reliable improvers (Jacobson-Truax)",
                 name="improvers")
    respondents = alt.Chart(frame(data["respondents"])).transform_filter(
        " && ".join([f_study, f_dialogue, f_side])).mark_line(point=True).encode(
        x=alt.X("wave:O"), y=alt.Y("n:Q", title="respondents"), color="series:N",
        tooltip=["series:N", "wave_label:N", "n:Q", "retained_pct:Q"],
    ).properties(width=width, height=180, title="Response and attrition", name="respondents")
    ideas = alt.Chart(frame(data["ideas"])).transform_filter(
        " && ".join([f_study, f_dialogue_only])).mark_bar().encode(
        x=alt.X("dialogue:N"), xOffset="stage:N", y=alt.Y("ideas:Q", title="ideas"),
        color=alt.Color("stage:N", sort=["proposed", "transferred", "adopted"]),
        tooltip=["study:N", "dialogue:N", "stage:N", "ideas:Q"],
    ).properties(width=width, height=160, title="Ideas proposed, transferred, adopted",
                 name="ideas")
    network = alt.Chart(frame(data["network"])).transform_filter(
        " && ".join([f_study, f_dialogue_only, f_wave])).mark_line(point=True).encode(
        x=alt.X("wave:O"), y=alt.Y("density:Q", title="cross-side tie density"),
        color="dialogue:N", tooltip=["study:N", "dialogue:N", "wave:O", "density:Q",
                                     "reciprocity:Q"],
    ).properties(width=width, height=160, title="Relationships: cross-side working ties",
                 name="network")
    chart = alt.vconcat(trajectories, gaps, dialogue_gaps, forest, improvers, respondents,
                        ideas, network).add_params(
        p_study, p_dialogue, p_side, p_wave, p_output).resolve_scale(color="independent")
    return chart.to_dict()


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 980px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }}
td.num {{ text-align: right; }}
.note {{ color: #555; font-size: 0.88em; }}
#vis.vega-embed {{ display: flex; flex-direction: column-reverse; }}
.vega-bindings {{ position: sticky; top: 0; background: #fff; padding: 0.5em 0;
  border-bottom: 1px solid #ddd; z-index: 1; }}
.vega-bind {{ display: inline-block; margin-right: 1em; }}
</style>
<script>{bundle}</script>
</head><body>
<h1>{title}</h1>
<p class="note">Generated {generated} by trackii_eval {version} from {n_studies} study stores
({studies}). Every number describes at least {k} people: smaller groups and every number from
which one could be computed are suppressed jointly with the studies' reports published with
this file (<a href="reports/">reports/</a>); suppressed values are absent from the file, not
hidden. Models are not refitted here: effects come from the studies' stored results.</p>
<h2>Portfolio summary</h2>
{meta}
<h2>Durability</h2>
{durability}
<h2>Evidence strength</h2>
{evidence}
<h2>Cost-effectiveness</h2>
{costs}
<h2>Dialogues and outputs (use the filters)</h2>
<div id="vis"></div>
<script>
const spec = {spec};
vegaEmbed('#vis', spec, {{mode: 'vega-lite', renderer: 'svg', actions: false}})
  .then(r => {{ window.dashboardView = r.view;
                document.body.dataset.readyMs = String(Math.round(performance.now()));
                document.body.dataset.ready = '1'; }})
  .catch(e => {{ console.error(e); document.body.dataset.ready = 'error'; }});
</script>
</body></html>
"""


def _table(head: list[str], rows: list[list[Any]], num: set[int] | None = None) -> str:
    num = num or set()
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(
            f"<td{' class=num' if i in num else ''}>{html.escape(str(c))}</td>"
            for i, c in enumerate(r)) + "</tr>")
    return "\n".join(out) + "</table>"


def _meta_html(dash: Dashboard) -> str:
    if not dash.meta:
        return "<p>Fewer than two dialogues with published effects: no pooled estimate.</p>"
    by: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for m in dash.meta:
        by.setdefault((m["construct"], m["timepoint"]), {})[m["method"]] = m
    rows = []
    for (_construct, tp), ms in by.items():
        kh, dl = ms["REML + Knapp-Hartung"], ms["DL"]
        rows.append([kh["output"], kh["unit"], tp, kh["k"], kh["estimate"],
                     f"[{kh['ci_low']}, {kh['ci_high']}]",
                     kh["p"], f"{dl['estimate']} [{dl['ci_low']}, {dl['ci_high']}]",
                     kh["tau2"], f"{kh['i2']}%", f"{kh['q']} (p {kh['q_p']})"])
    return _table(["output", "unit of the gap", "when", "dialogues",
                   "pooled gap (REML, Knapp-Hartung)", "95% CI", "p",
                   "DerSimonian-Laird [95% CI]", "tau² (REML)", "I²", "Cochran's Q"],
                  rows, {3, 4, 6, 8}) + (
        "<p class=note>Random-effects meta-analysis across the portfolio's dialogues of each "
        "dialogue's gap in change since baseline against its study's comparison group "
        "(difference of mean changes, Welch standard errors, from the stored scores), at the "
        "end of each study's programme and at each follow-up after it. REML with the "
        "Knapp-Hartung t interval is the headline (few dialogues); DerSimonian-Laird with a "
        "normal interval beside it. Gaps are in each output's unit (a yes/no output's share "
        "in percentage points, as in the reports). Dialogues of one study share its "
        "comparison group, so their estimates are correlated and the pooled interval "
        "somewhat too narrow.</p>")


def _durability_html(dash: Dashboard) -> str:
    rows = [[v.study, p["construct"], p["wave_label"], _pct(p["estimate"], dash),
             f"[{p['ci_low']}, {p['ci_high']}]"] for v in dash.studies for p in v.persistence]
    if not rows:
        return ("<p>No study stores a durability analysis (<code>kind: durability</code> in "
                "its plan).</p>")
    return _table(["study", "output", "wave", "share of the end-of-programme gap remaining",
                   "95% CI (%)"], rows, {3}) + (
        "<p class=note>From each study's stored durability analysis: the gap between the arms "
        "at a follow-up divided by the gap at the end of the programme (delta-method "
        "interval).</p>")


def _pct(x: Any, dash: Dashboard) -> str:
    if x is None:
        return "–"
    text = str(x)
    return text if text == dash.publication.result.marker else f"{text}%"


def _evidence_html(dash: Dashboard) -> str:
    rows = [[v.study, e["dialogue"], e["design"], e["n_baseline"], e["n_last"],
             _pct(e["retained_pct"], dash), e["models"]]
            for v in dash.studies for e in v.evidence]
    return _table(["study", "dialogue", "design", "n at baseline", "n at last wave",
                   "last wave / baseline", "stored analyses"], rows, {3, 4, 5})


def _costs_html(dash: Dashboard) -> str:
    if not dash.costs:
        return ("<p>No study declares its costs (<code>funding: {costs: {DIALOGUE: amount}}"
                "</code> in study.yaml).</p>")
    rows = [[c["study"], c["dialogue"], f"{c['cost']} {c['currency']}", c["per_participant"],
             c["per_transferred_idea"], c["per_improver"], c["per_additional_improver"],
             c["interval"]] for c in dash.costs]
    targets = [[c["study"], c["dialogue"], name, target, achieved, status]
               for c in dash.costs for name, status, target, achieved in c["targets"]]
    return _table(["study", "dialogue", "cost", "per participant", "per transferred idea",
                   "per reliable improver", "per additional improver", "95% interval"],
                  rows, {3, 4, 5, 6}) + (
        "<p class=note>Reliable improvers: perceptions at the end of the programme. "
        "Additional improvers: beyond the comparison group's rate; the interval carries the "
        "uncertainty of both shares through (simulation from their Jeffreys posteriors).</p>"
    ) + (_table(["study", "dialogue", "target", "target value", "achieved", "result"],
                targets) + (
        "<p class=note>Achieved: the observed value (cost per participant, cost per additional "
        "reliable improver, share of reliable improvers, gap at the end of the programme); "
        "the result compares the target with its 95% interval where it has one.</p>")
         if targets else "")


@functools.lru_cache(maxsize=1)
def _bundle() -> str:
    """vega, vega-lite and vega-embed as one script (from the vl-convert wheel; built once)."""
    import vl_convert as vlc

    return vlc.javascript_bundle().replace("</script", "<\\/script")


def build_dashboard(studies: list[PortfolioStudy], out_dir: str | Path, *,
                    k: int | None = None) -> Dashboard:
    """Write ``dashboard.html`` and the jointly protected ``reports/<study>/`` to ``out_dir``.

    Parameters
    ----------
    studies : list of PortfolioStudy
        The portfolio's studies (stores with scores and model results).
    out_dir : str or Path
        Output folder (created).
    k : int, optional
        Minimum cell size (default: the largest of the studies').

    Returns
    -------
    Dashboard
        With ``paths`` (``dashboard`` and one entry per study report).

    Raises
    ------
    ReportError
        See :func:`portfolio_tables`.
    DisclosureError
        The cells cannot be protected (nothing is written then).
    """
    dash = portfolio_tables(studies, k)
    dash.publication.protect()
    out = Path(out_dir)
    (out / "reports").mkdir(parents=True, exist_ok=True)
    for s in studies:
        sid = s.context.study_id
        from ..pipeline.provenance import last_run

        # the pooled report and its per-dialogue pages, printed by the joint decision
        pages = render_reports(s.store, s.context, out / "reports" / sid / "report.html",
                               model_run=last_run(s.store, "model"), tables=dash.reports[sid])
        dash.paths[sid] = pages.report
    data = dashboard_data(dash)
    constructs = sorted({r["construct"] for r in data["means"]})
    if not constructs:
        raise ReportError("dashboard: no observed means could be published (every group is "
                          f"smaller than {dash.publication.k} people)")
    names = {d.id: d.name for s in studies for d in s.context.config.dialogues}
    outputs = {c: _labels(s.context).construct(c) for s in studies for c in constructs
               if c in s.context.instrument.constructs}
    spec = _charts(data, [v.study for v in dash.studies], constructs, names, outputs)
    page = _PAGE.format(
        title="Portfolio dashboard: " + ", ".join(v.name for v in dash.studies)[:200],
        bundle=_bundle(),
        generated=dt.date.today().isoformat(), version=__version__,
        n_studies=len(dash.studies), studies=", ".join(v.study for v in dash.studies),
        k=dash.publication.k, meta=_meta_html(dash), evidence=_evidence_html(dash),
        durability=_durability_html(dash),
        costs=_costs_html(dash),
        spec=json.dumps(spec, default=str).replace("</", "<\\/"),
    )
    path = out / "dashboard.html"
    path.write_text(page, encoding="utf-8")
    dash.paths["dashboard"] = path
    return dash


def load_portfolio(studies: list[tuple[str | Path, str | Path | None]]) -> list[PortfolioStudy]:
    """Open the stores of a portfolio read-only, refusing any whose results are not current.

    Parameters
    ----------
    studies : list of (study folder, output folder or None)
        ``None`` or ``""``: the store is in ``build/<id>`` (as ``trackii-eval run`` writes it).

    Raises
    ------
    ConfigError
        A study folder without a valid study.yaml.
    StoreError
        No store where it should be.
    StaleResultError
        A store's scores or model results are missing or out of date (the message names the
        stage to run).
    """
    from ..errors import StaleResultError, StoreError
    from ..pipeline.context import load_context
    from ..pipeline.provenance import results_problem

    out: list[PortfolioStudy] = []
    for study_dir, out_dir in studies:
        ctx = load_context(study_dir, out=out_dir or None)
        path = ctx.out / f"{ctx.study_id}.duckdb"
        if not path.exists():
            for s in out:
                s.store.close()
            raise StoreError(f"{path}: no store of study '{ctx.study_id}'; run `trackii-eval "
                             f"run {study_dir}` first (or give STUDY=OUT for another folder)")
        store = Store(path, ctx.study_id, read_only=True)
        problem = results_problem(store, ctx)
        if problem is not None:
            store.close()
            for s in out:
                s.store.close()
            fix = "score" if problem.startswith("no scores") else "model"
            raise StaleResultError(f"{path}: {problem}; run `trackii-eval {fix} {study_dir}` "
                                   "first")
        out.append(PortfolioStudy(store, ctx))
    return out


def standalone_differences(study: PortfolioStudy, dash: Dashboard) -> int:
    """How many numbers the study's report protected on its own shows that the joint decision
    suppresses (the report `run` wrote must then not be published beside the dashboard).

    Raises
    ------
    ReportError
        If the dashboard's publication has not been protected yet.
    """
    from ..pipeline.provenance import last_run

    joint = dash.publication.result
    if joint is None:
        raise ReportError("dashboard: protect the publication first")
    alone = report_tables(study.store, study.context,
                          model_run=last_run(study.store, "model")).publication
    decision = alone.protect()
    sid = study.context.study_id
    n = 0
    for (table, key), status in decision.status.items():
        if status != "published":
            continue
        other = joint.status.get((f"{sid}/{table}", key))
        if other is not None and other != "published":
            n += 1
    return n
