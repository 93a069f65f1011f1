"""The report's layout: its sections as tables with human labels, and its figures.

:func:`pooled` and :func:`per_dialogue` run before disclosure control (they register numbers
and build :class:`~.tables.Table` objects); :func:`figures` and :func:`dialogue_figures` run
after it (the participant-flow diagram prints protected counts; trajectory figures draw only
means of groups of at least ``k`` people).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import figures as fg
from . import pages
from .disclose import Lazy, Publication, Shown
from .labels import Labels
from .scale import DIFFERENCE
from .sections import Analyses
from .tables import Table, check_registered

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["dialogue_figures", "figures", "per_dialogue", "pooled"]

OUTPUT_TITLES = {
    "perceptions": "Perceptions of the other side",
    "relationships": "Relationships across the divide",
    "moderation": "Effective moderation",
    "ideas": "Idea generation",
    "behaviour": "Behaviour towards the other side",
}

RULES = {
    "ambiguous_link": "Record could not be linked to an earlier wave without guessing",
    "unknown_participant": "Code is not a linked participant",
}

SPAGHETTI_PER_GROUP = 15
SPAGHETTI_JITTER = 2.0  # points on a 0-100 scale (standard deviation of the added noise)


def _e(text: Any) -> str:
    return html.escape(str(text))


# ------------------------------------------------------------------------------ pooled
def pooled(study: Any, labels: Labels, analyses: Analyses, results: dict[str, dict[str, Any]],
           scores: pd.DataFrame, pub: Publication, ctx: Any, page: dict[str, Any],
           n_people: int) -> dict[str, Any]:
    """Register the remaining numbers and lay out the pooled report's tables."""
    config = study.config
    out: dict[str, Any] = {}
    links = {d.id: f"dialogues/{pages.slug(d.id)}.html" for d in config.dialogues}
    out["design_tables"] = pages.study_tables(config, labels, links)
    out["response_table"] = Table(
        "response", "Respondents per wave and arm",
        ["Wave", "Arm", "Responded", "Retained (% of baseline)"],
        [[labels.wave(r["wave"], short=True), labels.arm(r["arm"]), r["n"], r["retained"]]
         for r in page["responses"]], labels=(0, 1))
    out["linkage_table"] = Table(
        "linkage", "Linking each wave's records to earlier waves",
        ["Wave", "Records", "Exact", "Fuzzy", "By decision", "New", "Ambiguous",
         "Share of baseline people matched"],
        [[str(r["wave"]), r["records"], r["exact"], r["fuzzy"], r["decision"], r["new"],
          r["ambiguous"], r["match_rate"]] for r in page["linkage"]], labels=(0,), left=())
    out["files_table"] = Table(
        "files", "Data files read", ["File", "Wave", "Format", "Rows read", "Stored",
                                     "Quarantined", "SHA-256 (first 12)"],
        [[f["file"], str(f["wave"]), f["format"], f["rows_read"], f["rows_stored"],
          f["rows_quarantined"], f["sha256"]] for f in page["files"]], labels=(0, 1, 2, 6))
    out["problems_table"] = Table(
        "problems", "Problems found at ingest", ["Problem", "Rule", "Scope", "Count"],
        [[RULES.get(p["rule"], p["rule"].replace("_", " ").capitalize()), p["rule"],
          p["scope"], p["n"]] for p in page["problems"]], labels=(0, 1, 2))
    # -- outputs -----------------------------------------------------------------------
    constructs = list(labels.instrument.constructs)
    effect_sizes = {c: analyses.effect_sizes(c) for c in constructs}
    effect_tables = {c: _effects_table(c, page["effects"], labels, ctx, effect_sizes[c][1])
                     for c in constructs}
    rel = {c: _reliability_table(c, page["reliability"], labels) for c in constructs}
    sub_tables, forest = analyses.subgroups()
    outputs = []
    by_output: dict[str, list[str]] = {}
    for c, con in labels.instrument.constructs.items():
        by_output.setdefault(str(con.output), []).append(c)
    for output, cons in by_output.items():
        blocks = []
        for c in cons:
            blocks.append({
                "construct": c, "title": labels.construct(c), "unit": labels.unit(c),
                "panel": c in pages.panel_constructs(labels),
                "effects": effect_tables[c], "effect_sizes": effect_sizes[c][0],
                "durability": analyses.durability(c),
                "reliable_change": analyses.reliable_change(c),
                "reliability": rel[c],
                "item_texts": [i.text for i in labels.instrument.constructs[c].items],
                "sources": sorted({i.source for i in labels.instrument.constructs[c].items
                                   if i.source}),
            })
        outputs.append({"id": f"output-{output}", "output": output,
                        "title": OUTPUT_TITLES.get(output, output.capitalize()),
                        "blocks": blocks})
    out["outputs"] = outputs
    out["moderation_table"] = Table(
        "moderation", "Participants' rating of the moderation (end of the programme)",
        ["Dialogue", "Respondents", "Mean rating (0–100)", "95% CI", "Moderation team"],
        [[labels.dialogue(m["dialogue"]), m["n"], m["mean"], m["ci"] or "–", m["team"]]
         for m in page["moderation"]], labels=(0, 4))
    out["ideas_table"] = Table(
        "ideas", "Ideas logged by each dialogue",
        ["Dialogue", "Ideas", "Per workshop", "Co-developed across sides",
         "Transferred to officials", "Adopted", "Participants' own rating (0–100)"],
        [[labels.dialogue(i["dialogue"]), i["n"], i["per_workshop"], i["cross_side"],
          i["transferred"], i["adopted"], i["self_rating"]] for i in page["ideas"]])
    out["network_table"] = Table(
        "network", "Ties across the divide among each wave's respondents",
        ["Dialogue", "Wave", "Respondents", "Cross-side tie density", "Reciprocity",
         "Working ties", "Persisting from previous wave"],
        [[labels.dialogue(r["dialogue"]), labels.wave(r["wave"], short=True), r["n"],
          r["density"], r["reciprocity"], r["working"], r["persisting"]]
         for r in page["network"]], labels=(0, 1))
    out["invariance_table"] = Table(
        "invariance", "Measurement invariance across waves",
        ["Outcome", "Level", "Chi-square", "df", "CFI", "RMSEA", "SRMR", "ΔCFI", "Decision"],
        [[labels.construct(r["construct"]), str(r["model"]), r["chisq"],
          pub.stat("invariance", (r["construct"], r["model"], "df"),
                   int(str(r["n"].text)), str(r["df"])),
          r["cfi"], r["rmsea"], r["srmr"], r["delta_cfi"], str(r["decision"])]
         for r in page["invariance"]], labels=(0, 1, 8))
    items = labels.instrument.items
    out["item_table"] = Table(
        "item-flags", "Items to look at", ["Outcome", "Item", "Wave", "Item-rest r",
                                           "Alpha if deleted", "At floor", "At ceiling"],
        [[labels.construct(r["construct"]), items[r["item"]].text if r["item"] in items
          else r["item"], labels.wave(r["wave"], short=True), r["r_drop"],
          r["alpha_if_deleted"], r["floor"], r["ceiling"]] for r in page["item_flags"]],
        labels=(0, 1, 2))
    # -- stored analyses ---------------------------------------------------------------
    out["balance_tables"] = analyses.balance()
    out["subgroup_tables"] = sub_tables
    out["forest"] = forest
    out["attrition_tables"] = analyses.attrition(ctx.response)
    out["comparison_tables"] = analyses.growth_comparison(n_people)
    out["appendix_table"] = _appendix(page["effects"], labels)
    headline = next((r["spec"]["outcome"] for r in results.values()
                     if r["spec"].get("headline")), None)
    panel = pages.panel_constructs(labels)
    out["findings"] = pages.findings(
        headline=headline, outcomes=[c for c in panel if c != headline] + (
            [headline] if headline else []),
        analyses=analyses, effects=ctx.effects, labels=labels, pub=pub,
        retained=ctx.retained, forest=forest, people=ctx.people, config=config)
    out["people_sentence"] = _people_sentence(ctx, labels, config)
    out["deviations"] = _deviations(results, analyses, labels)
    page["methods"] = [*page["methods"][:-2], *_analysis_methods(analyses, labels),
                       *page["methods"][-2:]]
    out["headline_outcome"] = headline
    out["_ctx"] = ctx
    out["_labels"] = labels
    out["_scores"] = scores
    out["toc"] = _toc(out, page)
    for t in _all_tables(out):
        check_registered(t)
    return out


def _all_tables(out: dict[str, Any]) -> list[Table]:
    tables = []
    for v in out.values():
        if isinstance(v, Table):
            tables.append(v)
        elif isinstance(v, dict):
            tables += [t for t in v.values() if isinstance(t, Table)]
        elif isinstance(v, list):
            tables += [t for t in v if isinstance(t, Table)]
    for o in out.get("outputs", []):
        for b in o["blocks"]:
            for key in ("effects", "reliability"):
                if isinstance(b[key], Table):
                    tables.append(b[key])
            for key in ("effect_sizes", "durability", "reliable_change"):
                tables += b[key]
    return tables


def _toc(out: dict[str, Any], page: dict[str, Any]) -> list[tuple[str, str]]:
    toc = [("summary", "Summary for funders"), ("study", "The study"),
           ("balance", "Baseline balance")]
    toc += [(o["id"], o["title"]) for o in out["outputs"]]
    toc += [("for-whom", "For whom did it work?"), ("robustness", "Robustness"),
            ("methods", "Methods and limitations"),
            ("provenance", "Provenance and deviations from the plan"),
            ("appendix", "Appendix: model terms")]
    return toc


def _effects_table(construct: str, effects: list[dict[str, Any]], labels: Labels, ctx: Any,
                   sizes: dict[tuple[str, Any], Shown]) -> Table:
    """The estimates of every model of ``construct``, grouped by model, with N and effect
    sizes (where the plan stored them)."""
    unit = labels.unit(construct)
    rows: list[list[Any]] = []
    groups: dict[int, str] = {}
    with_sizes = bool(sizes)
    seen = None
    shown: set[tuple[str, str]] = set()
    columns: list[str] = []  # "" = differences in the outcome's units, else a ratio scale
    for e in effects:
        if e["outcome"] != construct:
            continue
        name = e["model"]
        if name != seen:
            groups[len(rows)] = f"{labels.model(name)} — {labels.model_kind(name)}"
            seen = name
        term_label = labels.term(name, str(e["term"]))
        if (name, term_label) in shown:
            continue  # a contrast that is one of the model's own terms
        shown.add((name, term_label))
        _, ngroups = ctx.model_n.get(name, (None, None))
        term = str(e["term"])
        scale = e.get("scale", DIFFERENCE)
        column = "" if scale.difference else scale.column
        if column not in columns:
            columns.append(column)
        # each value sits in the column of its own scale (a link-scale fit's ratio never under
        # "Difference"); the other value columns of the row stay empty
        row = [labels.term(name, term), (column, e["estimate"]), e["ci"], e["p"],
               ngroups if ngroups is not None else "–"]
        if with_sizes:
            w = labels.term_wave(term)
            size = None if not scale.difference else sizes.get(("hedges_g", w)) \
                if w is not None else (
                sizes.get(("growth_d", None)) if term.startswith("time:") else None)
            row.append(size if size is not None else "–")
        rows.append(row)
    columns = sorted(columns, key=lambda c: (c != "", c))
    rows = [[r[0], *[r[1][1] if r[1][0] == c else "" for c in columns], *r[2:]] for r in rows]
    heads = [f"Difference ({unit.effect})" if c == "" else c for c in columns] or [
        f"Difference ({unit.effect})"]
    ratios = [c for c in columns if c and "ratio" in c.lower()]
    cols = ["Estimate", *heads, "95% CI", "p", "N (participants)"]
    if with_sizes:
        cols.append("Standardized effect (95% CI)")
    return Table(f"effects-{construct}", f"{labels.construct(construct)}: estimated effects",
                 cols, rows, groups=groups,
                 note="Differences are dialogue participants minus the comparison group. "
                      "Growth-model rows are differences in yearly change; "
                      "difference-in-differences rows are the change in the gap since "
                      "baseline at each wave. N: participants in the model."
                 + (f" {' and '.join(ratios)}s (logistic, Poisson or cumulative-logit "
                    "models) are exp of the model's coefficient: 1 = no difference; the 95% CI "
                    "is on the same scale and p is that of the coefficient." if ratios else "")
                 + (" Latent probit shifts are in standard deviations of the latent scale "
                    "(0 = no difference)." if any(c and "ratio" not in c.lower()
                                                   for c in columns) else ""))


def _reliability_table(construct: str, rows: list[dict[str, Any]], labels: Labels) -> Table:
    mine = [r for r in rows if r["construct"] == construct]
    return Table(
        f"reliability-{construct}", f"{labels.construct(construct)}: reliability per wave",
        ["Wave", "N", "Items", "Cronbach's alpha", "95% CI", "McDonald's omega", "95% CI",
         "Below threshold"],
        [[labels.wave(r["wave"], short=True), r["n"], str(r["k"]), r["alpha"], r["alpha_ci"],
          r["omega"], r["omega_ci"], "yes" if r["flag"] else "no"] for r in mine],
        labels=(0, 2, 7),
        note="Alpha with the Feldt interval; omega total from a one-factor model with a "
             "bootstrap percentile interval. Values of .70 and above are conventionally "
             "adequate for group comparisons.")


def _appendix(effects: list[dict[str, Any]], labels: Labels) -> Table:
    return Table(
        "model-terms", "Every estimated term, with the code's names",
        ["Model", "Term", "Reads as", "Scale", "Estimate", "95% CI", "df", "p"],
        [[e["model"], str(e["term"]), labels.term(e["model"], str(e["term"])),
          _scale_label(e, labels), e["estimate"], e["ci"], e["df"], e["p"]] for e in effects],
        labels=(0, 1, 2, 3),
        note="Scale: a difference in the outcome's units, or, for logistic, Poisson and "
             "cumulative-link models, exp of the coefficient (odds or rate ratio, 1 = no "
             "difference) or a latent probit shift.")


def _scale_label(e: dict[str, Any], labels: Labels) -> str:
    """What an appendix estimate is: a difference in the outcome's units, or its scale."""
    scale = e.get("scale", DIFFERENCE)
    if scale.difference:
        return f"difference ({labels.unit(e['outcome']).effect})" if e.get("outcome") else \
            "difference"
    return scale.name


def _people_sentence(ctx: Any, labels: Labels, config: Any) -> Lazy | None:
    first = config.waves[0].index
    base = ctx.linkage.get((first, "records"))
    news = [(w, c) for (w, col), c in ctx.linkage.items() if col == "new" and w != first]
    if ctx.people is None or base is None:
        return None
    return Lazy(lambda: (
        f"{ctx.people} people were analysed: the {base} whose records were read at baseline, "
        "plus anyone whose record at a later wave matched no earlier code and was therefore "
        "counted as a new participant (new records: " + "; ".join(
            f"{_e(labels.wave(w, short=True))}: {c}" for w, c in news) +
        "). A new record is usually a participant whose self-generated code was mistyped "
        "beyond one slip, so the same person may be counted twice; ambiguous records were set "
        "aside (quarantined) rather than guessed."))


def _deviations(results: dict[str, dict[str, Any]], analyses: Analyses,
                labels: Labels) -> list[str]:
    """What was not fitted or reported as the plan specified."""
    from .build import _stored_fit

    out = []
    for name, res in results.items():
        fit = _stored_fit(res)
        label = labels.model(name)
        if not fit.record.converged:
            out.append(f"{label}: the model did not converge; its numbers are not to be cited.")
        for w in fit.warnings:
            out.append(f"{label}: {w}")
        for n in res.get("notes", []) or []:
            out.append(f"{label}: {n}")
        tab = fit.tidy()
        for r in tab[tab["role"] == "effect"].to_dict("records"):
            if not r.get("estimable", True):
                out.append(f"{label}: {labels.term(name, str(r['term']))} could not be "
                           f"estimated ({r.get('note', '')}).")
    return out


def _analysis_methods(analyses: Analyses, labels: Labels) -> list[Lazy]:
    """One methods paragraph per stored analysis: its plan label and what it computed."""
    out = []
    for kind, items in analyses.by_kind.items():
        for name, res in items:
            notes = "; ".join(res.get("notes") or [])
            text = (f"<strong>{_e(labels.model(name))}</strong> (<code>{_e(name)}</code>, "
                    f"{_e(kind.replace('_', ' '))})" + (f": {_e(notes)}." if notes else "."))
            out.append(Lazy(lambda text=text: text))
    return out


# ---------------------------------------------------------------------------- per dialogue
def per_dialogue(study: Any, labels: Labels, analyses: Analyses, scores: pd.DataFrame,
                 pub: Publication, ctx: Any, page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Register and lay out each dialogue's page (same publication as the pooled report)."""
    config = study.config
    out = {}
    for d in config.dialogues:
        t = pages.dialogue_tables(d, scores, labels, pub, ctx.response)
        mod = [m for m in page["moderation"] if m["dialogue"] == d.id]
        ideas = [i for i in page["ideas"] if i["dialogue"] == d.id]
        net = [r for r in page["network"] if r["dialogue"] == d.id]
        rc = analyses.reliable_change(
            only=lambda r, d=d: str(r["by"]) == "dialogue" and str(r["group"]) == d.id)
        subgroups = [f for f in page["forest"] if f["moderator"] == "dialogue"
                     and f["level"] == d.id]
        tables = {
            "moderation": Table(f"moderation-{d.id}", "Rating of the moderation",
                                ["Respondents", "Mean rating (0–100)", "95% CI"],
                                [[m["n"], m["mean"], m["ci"] or "–"] for m in mod], labels=()),
            "ideas": Table(f"ideas-{d.id}", "Ideas logged",
                           ["Ideas", "Per workshop", "Co-developed across sides",
                            "Transferred to officials", "Adopted",
                            "Participants' own rating (0–100)"],
                           [[i["n"], i["per_workshop"], i["cross_side"], i["transferred"],
                             i["adopted"], i["self_rating"]] for i in ideas], labels=()),
            "network": Table(f"network-{d.id}", "Ties across the divide",
                             ["Wave", "Respondents", "Cross-side tie density", "Reciprocity",
                              "Working ties", "Persisting from previous wave"],
                             [[labels.wave(r["wave"], short=True), r["n"], r["density"],
                               r["reciprocity"], r["working"], r["persisting"]] for r in net]),
        }
        judged = _judgement(d, t["outputs"], mod, ideas, net, subgroups, labels)
        others = _judgement(d, [o for o in ("perceptions", "relationships", "moderation",
                                            "ideas") if o not in t["outputs"]],
                            mod, ideas, net, subgroups, labels)
        ctxd = {"dialogue": d, "respondents": t["respondents"], "means": t["means"],
                "tables": tables, "reliable_change": rc, "subgroups": subgroups,
                "judgement": judged, "other_outputs": others,
                "outputs": [OUTPUT_TITLES.get(o, o) for o in t["outputs"]],
                "_ctx": ctx, "_labels": labels}
        for tab in [t["respondents"], *t["means"], *tables.values(), *rc]:
            check_registered(tab)
        out[d.id] = ctxd
    pages.relate_dialogues(pub, ctx.response, labels.treated,
                           [w.index for w in config.waves if not w.planned],
                           [d.id for d in config.dialogues])
    return out


def _judgement(d: Any, outputs: list[str], mod: list[dict], ideas: list[dict], net: list[dict],
               subgroups: list[dict], labels: Labels) -> list[Lazy]:
    """Evidence on each output the dialogue's objective speaks to, in sentences."""
    out = []
    for o in outputs:
        title = OUTPUT_TITLES.get(o, o)
        if o == "ideas" and ideas:
            i = ideas[0]
            out.append(Lazy(lambda i=i, title=title: (
                f"<strong>{_e(title)}</strong>: {i['n']} ideas logged ({i['per_workshop']} per "
                f"workshop); {i['transferred']} were transferred to officials and {i['adopted']} "
                "adopted.")))
        elif o == "relationships" and net:
            a, b = net[0], net[-1]
            out.append(Lazy(lambda a=a, b=b, title=title: (
                f"<strong>{_e(title)}</strong>: cross-side tie density went from {a['density']} "
                f"({_e(labels.wave(a['wave'], short=True))}) to {b['density']} "
                f"({_e(labels.wave(b['wave'], short=True))}); {b['persisting']} of ties "
                "persisted into the last wave.")))
        elif o == "moderation" and mod:
            m = mod[0]
            out.append(Lazy(lambda m=m, title=title: (
                f"<strong>{_e(title)}</strong>: mean rating {m['mean']} of 100 "
                f"(95% CI {m['ci'] or '–'}).")))
        mine = [s for s in subgroups if s["outcome"] == o]
        for s in mine:
            out.append(Lazy(lambda s=s, title=title: (
                f"<strong>{_e(title)}</strong>: this dialogue's participants against the "
                "comparison group" + (f" ({_e(s['notes'].split(';')[0])})" if s["notes"]
                                      else "")
                + f": {s['cell']} {_e(s['unit'])} (95% CI {s['ci_cell']}).")))
        if o == "perceptions" and not mine:
            out.append(Lazy(lambda title=title: (
                f"<strong>{_e(title)}</strong>: see the observed means and trajectories below "
                "(the analysis plan estimates no effect for this dialogue alone).")))
    return out


# --------------------------------------------------------------------------------- figures
def _events(config: Any) -> list[tuple[float, str]]:
    base = config.waves[0].date
    return [((e.date - base).days / 365.25, e.label) for e in config.context_events]


def _xticks(config: Any, labels: Labels) -> dict[float, str]:
    t = config.wave_time()
    return {t[w.index]: f"{w.index}\n({t[w.index]:.0f} y)" for w in config.waves
            if not w.planned}


def figures(study: Any, tables: Any, store: Store, results: dict[str, dict[str, Any]],
            links: dict[str, str]) -> dict[str, Any]:
    """The pooled report's figures (after disclosure control)."""
    page = tables.context
    labels: Labels = page["_labels"]
    ctx = page["_ctx"]
    scores: pd.DataFrame = page["_scores"]
    config = study.config
    k = tables.publication.k
    events = _events(config)
    ticks = _xticks(config, labels)
    arms = [a.id for a in config.arms]
    arm_series = fg.style(arms, {a.id: a.label or a.id for a in config.arms},
                          labels.comparison)
    out: dict[str, Any] = {"trajectories": {}, "by_dialogue": {}}
    for c in pages.panel_constructs(labels):
        unit = labels.unit(c)
        predicted, model = None, None
        for name, res in results.items():
            if res.get("spec", {}).get("outcome") == c and res.get("trajectory"):
                if model is None or res["spec"].get("headline") or "post_time" in str(
                        res["spec"].get("formula")):
                    predicted, model = pd.DataFrame(res["trajectory"]).rename(
                        columns={"arm": "group"}), name
        obs = pages.observed_means(scores, c, k)
        what = labels.construct_lower(c)
        out["trajectories"][c] = {
            "svg": fg.trajectory_figure(
                obs, predicted, series=arm_series, ylabel=unit.axis, factor=unit.factor,
                program_end=config.program_end_time, events=events, xticks=ticks,
                alt=f"Line chart: {what} by arm at each wave, observed means with 95% "
                    "confidence intervals" + (" and the model's predicted trajectory" if model
                                              else "") + "; the programme period and context "
                    "events are marked."),
            "model": labels.model(model) if model else None,
        }
        dser = fg.style([d.id for d in config.dialogues] + [labels.comparison],
                        {**{d.id: d.name for d in config.dialogues},
                         labels.comparison: labels.arm(labels.comparison)}, labels.comparison)
        sc = scores.copy()
        sc["grp"] = np.where(sc["arm"] == labels.comparison, labels.comparison, sc["dialogue"])
        dobs = pages.observed_means(sc, c, k, by="grp")
        out["by_dialogue"][c] = fg.trajectory_figure(
            dobs, None, series=dser, ylabel=unit.axis, factor=unit.factor,
            program_end=config.program_end_time, events=events, xticks=ticks,
            alt=f"Line chart: {what} per dialogue and for the comparison group, observed means "
                "with 95% confidence intervals at each wave.")
    headline = page.get("headline_outcome")
    if headline:
        out["spaghetti"] = _spaghetti(scores, headline, labels, config, k, arm_series, events,
                                      ticks)
    if page["forest"]:
        rows = pd.DataFrame([{"label": f["label"], "estimate": f["factor"] * f["estimate"],
                              "ci_low": f["factor"] * f["ci_low"],
                              "ci_high": f["factor"] * f["ci_high"],
                              "hidden": f["cell"].hidden} for f in page["forest"]])
        rows = rows[~rows["hidden"]]  # a suppressed estimate is not drawn either
        if not rows.empty:
            out["forest_svg"] = fg.forest_figure(
                rows, xlabel=f"Effect ({page['forest'][0]['unit']}), 95% CI",
                alt="Forest plot: the dialogue-comparison difference with its 95% confidence "
                    "interval for each subgroup; the dashed line is no difference.")
    out["flow"] = _flow(ctx, labels, config, page)
    return out


def _spaghetti(scores: pd.DataFrame, construct: str, labels: Labels, config: Any, k: int,
               series: list[fg.Series], events: list, ticks: dict) -> fg.Svg | None:
    """Individual trajectories of a fixed random sample per arm, jittered, no identifiers.

    Only people in arm-wave groups of at least ``k`` are drawn, at most
    :data:`SPAGHETTI_PER_GROUP` per arm, each value moved by Gaussian noise
    (:data:`SPAGHETTI_JITTER` points) and rounded to whole points, so that no plotted point is
    a person's exact answer; the lines carry no identifier, and the sample is drawn with a
    fixed seed from participants sorted by pseudonym (the same sample on every run).
    """
    unit = labels.unit(construct)
    sub = scores[(scores["construct"] == construct) & scores["score"].notna()].copy()
    sizes = sub.groupby(["arm", "wave"])["participant"].transform("nunique")
    sub = sub[sizes >= k]
    rng = np.random.default_rng(20221)
    people_rows = []
    for s in series:
        mine = sub[sub["arm"] == s.key]
        counts = mine.groupby("participant").size()
        eligible = sorted(counts[counts >= 2].index)
        if len(eligible) < k:
            continue
        pick = rng.choice(len(eligible), size=min(SPAGHETTI_PER_GROUP, len(eligible)),
                          replace=False)
        for line, j in enumerate(sorted(pick)):
            one = mine[mine["participant"] == eligible[j]].sort_values("time")
            noise = rng.normal(0, SPAGHETTI_JITTER * (1 if unit.factor == 1 else 0.02),
                               len(one))
            people_rows += [{"group": s.key, "line": line, "time": t,
                             "value": round(float(v + e) * unit.factor)}
                            for t, v, e in zip(one["time"], one["score"], noise, strict=True)]
    if not people_rows:
        return None
    means = pages.observed_means(scores, construct, k)
    means = means.assign(mean=means["mean"] * unit.factor)
    return fg.spaghetti_figure(
        pd.DataFrame(people_rows), means, series=series, ylabel=unit.axis,
        program_end=config.program_end_time, events=events, xticks=ticks,
        alt=f"Individual trajectories: {labels.construct_lower(construct)} of a random sample "
            "of participants per arm (thin grey lines, values jittered) under the arm's mean "
            "(thick line).")


def _flow(ctx: Any, labels: Labels, config: Any, page: dict[str, Any]) -> fg.Svg | None:
    """The participant-flow diagram from enrolment through every wave (protected counts)."""
    waves = [w.index for w in config.waves if not w.planned]
    if not waves or not ctx.linkage:
        return None
    first = waves[0]
    files = {int(f["wave"]): f for f in page["files"]}
    arms = [a.id for a in config.arms]

    def resp(w: int) -> list[str]:
        lines = []
        for a in arms:
            if (w, a) in ctx.response:
                ret = ctx.retained.get((w, a))
                lines.append(f"{labels.arm(a)}:")
                lines.append(f"   {ctx.response[(w, a)]}"
                             + (f" ({ret} of baseline)" if ret is not None and w != first
                                else ""))
        return lines

    f0 = files.get(first)
    enrol = fg.FlowBox(f"Enrolled: {labels.wave(first)}", tuple(
        ([f"{f0['rows_read']} records read, {f0['rows_quarantined']} set aside"] if f0 else [])
        + resp(first)))
    columns = []
    for w in waves[1:]:
        f = files.get(w)
        link = {c: ctx.linkage.get((w, c)) for c in ("records", "exact", "fuzzy", "decision",
                                                     "new", "ambiguous")}
        boxes = [fg.FlowBox("Records received", (
            f"{f['rows_read'] if f else link['records']} rows read",))]
        boxes.append(fg.FlowBox("Linked to earlier waves", (
            f"{link['exact']} exact code", f"{link['fuzzy']} within one slip",
            f"{link['decision']} by evaluator", f"{link['new']} new (no match)")))
        boxes.append(fg.FlowBox("Set aside (quarantined)", (
            f"{f['rows_quarantined'] if f else '–'} rows",
            f"incl. {link['ambiguous']} ambiguous links")))
        boxes.append(fg.FlowBox("Analysed", tuple(resp(w))))
        columns.append((labels.wave(w, short=True), boxes))
    total = fg.FlowBox("Participants analysed over all waves", (
        f"{ctx.people} people",)) if ctx.people is not None else None
    return fg.flow_diagram(
        enrol, columns, total=total,
        alt="Participant flow: records read at enrolment and at each later wave, how many "
            "were linked to earlier waves, set aside or new, and how many were analysed per "
            f"arm; suppressed counts are shown as {ctx.people.pub.result.marker}."
        if ctx.people is not None and ctx.people.pub.result else "Participant flow diagram.")


def dialogue_figures(study: Any, tables: Any, store: Store, results: dict[str, dict[str, Any]],
                     did: str) -> dict[str, Any]:
    """One dialogue's trajectories (its participants against the comparison group)."""
    page = tables.context
    labels: Labels = page["_labels"]
    scores: pd.DataFrame = page["_scores"]
    config = study.config
    k = tables.publication.k
    d = next(x for x in config.dialogues if x.id == did)
    events = _events(config)
    ticks = _xticks(config, labels)
    sc = scores[(scores["dialogue"] == did) | (scores["arm"] == labels.comparison)].copy()
    sc["grp"] = np.where(sc["arm"] == labels.comparison, labels.comparison, did)
    series = fg.style([did, labels.comparison], {did: d.name,
                                                  labels.comparison: labels.arm(
                                                      labels.comparison)}, labels.comparison)
    out = {}
    for c in pages.panel_constructs(labels):
        unit = labels.unit(c)
        obs = pages.observed_means(sc, c, k, by="grp")
        if obs.empty:
            continue
        out[c] = {"title": labels.construct(c), "svg": fg.trajectory_figure(
            obs, None, series=series, ylabel=unit.axis, factor=unit.factor,
            program_end=config.program_end_time, events=events, xticks=ticks,
            alt=f"Line chart: {labels.construct_lower(c)} of {d.name} participants and of the "
                "comparison group at each wave, observed means with 95% confidence intervals; "
                "the programme period and context events are marked.")}
    return {"trajectories": out}


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
