"""What the pooled report's first page and study section say, and the per-dialogue pages.

Every number is a :class:`~.disclose.Shown` cell of the report's one
:class:`~.disclose.Publication` (per-dialogue numbers are sub-totals of pooled ones, so both are
protected together); sentences are :class:`~.disclose.Lazy` texts assembled after disclosure
control ran.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from .disclose import Lazy, Publication, Shown
from .labels import Labels
from .sections import Analyses, num, pct
from .tables import Table

if TYPE_CHECKING:
    from ..config import StudyConfig

__all__ = ["dialogue_tables", "findings", "observed_means", "panel_constructs", "study_tables"]

# Words in a dialogue's stated objective and the Allen–Sharp output they speak to
_OBJECTIVE_WORDS = {
    "ideas": ("option", "idea", "proposal", "solution", "policy", "negotiat"),
    "relationships": ("channel", "relationship", "contact", "network", "trust", "tie"),
    "perceptions": ("stereotyp", "perception", "attitude", "prejudice", "image", "trust"),
    "moderation": ("facilitat", "moderat", "safe space"),
}


def panel_constructs(labels: Labels) -> list[str]:
    """Outcomes asked of both arms at every wave (those with trajectories)."""
    return [c for c, con in labels.instrument.constructs.items()
            if con.asked_of is None and con.waves is None]


def observed_means(scores: pd.DataFrame, construct: str, k: int, by: str = "arm",
                   where: pd.Series | None = None) -> pd.DataFrame:
    """Mean, 95% t interval and n per group and wave; groups of fewer than ``k`` dropped.

    Returns
    -------
    pd.DataFrame
        Columns group, wave, time, mean, std, count, ci_low, ci_high.
    """
    sub = scores[(scores["construct"] == construct) & scores["score"].notna()]
    if where is not None:
        sub = sub[where.reindex(sub.index, fill_value=False)]
    g = sub.groupby([by, "wave", "time"], observed=True)["score"]
    out = g.agg(["mean", "std", "count"]).reset_index().rename(columns={by: "group"})
    out = out[out["count"] >= k]  # small groups are not published
    half = stats.t.ppf(0.975, np.maximum(out["count"] - 1, 1)) * out["std"] / np.sqrt(
        out["count"])
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out


def study_tables(config: StudyConfig, labels: Labels, dialogue_links: dict[str, str]
                 ) -> dict[str, Table]:
    """The design: dialogues (with links to their reports), arms, waves (labels only)."""
    dialogues = Table("dialogues", "The dialogues", ["Dialogue", "Track", "Sides",
                                                     "Stated objective", "Moderation team"],
                      labels=(0, 1, 2, 3, 4))
    for d in config.dialogues:
        team = ", ".join(f"{m.role}: {m.type}{' (native speaker)' if m.native_language else ''}"
                         for m in d.moderators) or "–"
        link = dialogue_links.get(d.id)
        name = Lazy(lambda d=d, link=link: (
            f'<a href="{link}">{_esc(d.name)}</a>' if link else _esc(d.name)))
        dialogues.rows.append([name, d.track, " / ".join(d.sides), d.objectives or "–", team])
    waves = Table("waves", "Survey waves", ["Wave", "Label", "Fielded", "Phase"],
                  labels=(0, 1, 2, 3))
    phase = {"baseline": "before the programme", "post": "end of the programme",
             "follow_up": "after the programme"}
    for w in config.waves:
        waves.rows.append([str(w.index), w.label, w.date.isoformat() if w.date else "planned",
                           phase.get(str(w.phase), str(w.phase))])
    return {"dialogues": dialogues, "waves": waves}


def _esc(text: str) -> str:
    import html
    return html.escape(text)


# ------------------------------------------------------------------------------- findings
def _gap_phrase(est: float, lo: float, hi: float, unit: str, factor: float,
                digits: int) -> str:
    return (f"{num(est, digits, factor)} {unit} (95% CI {num(lo, digits, factor)} to "
            f"{num(hi, digits, factor)})")


def gap_series(outcome: str, analyses: Analyses, effects: dict[tuple[str, str], dict],
               labels: Labels, pub: Publication) -> list[dict[str, Any]]:
    """The dialogue-comparison gap at each wave after baseline, as printed sentences' parts.

    From the stored durability analysis if there is one (model-based gap), else from the
    event study of ``outcome`` (change in the gap since baseline). Each item: wave, cell (the
    registered "gap (CI)" phrase), estimate, ci_low, ci_high, source.
    """
    unit = labels.unit(outcome)
    out = []
    for name, _spec, gaps in analyses.frames("durability", "gaps", outcome):
        for r in gaps.sort_values("wave").to_dict("records"):
            n = min(int(r.get("n_treated") or 0), int(r.get("n_comparison") or 0))
            w = int(r["wave"])
            out.append({"wave": w, "estimate": r["estimate"], "ci_low": r["ci_low"],
                        "ci_high": r["ci_high"], "source": "durability",
                        "cell": pub.stat("findings", (name, w, "gap"), n, _gap_phrase(
                            r["estimate"], r["ci_low"], r["ci_high"], unit.effect,
                            unit.factor, unit.digits))})
        if out:
            return out
    for (name, term), e in effects.items():
        w = labels.term_wave(term)
        if w is None or labels.outcome_of(name) != outcome or \
                labels.specs.get(name, {}).get("kind") != "event_study":
            continue
        r = e["raw"]
        scale = e.get("scale")
        if not r.get("estimable", True) or (scale is not None and not scale.difference):
            continue  # a link-scale coefficient is no gap in the outcome's units
        out.append({"wave": w, "estimate": r["estimate"], "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"], "source": "event_study",
                    "cell": pub.stat("findings", (name, w, "gap"), int(e["n"]), _gap_phrase(
                        r["estimate"], r["ci_low"], r["ci_high"], unit.effect, unit.factor,
                        unit.digits))})
    return sorted(out, key=lambda x: x["wave"])


def findings(*, headline: str | None, outcomes: list[str], analyses: Analyses,
             effects: dict[tuple[str, str], dict], labels: Labels, pub: Publication,
             retained: dict[tuple[int, str], Shown], forest: list[dict[str, Any]],
             people: Shown | None, config: StudyConfig) -> dict[str, Any]:
    """The first page: plain-language findings, each with its number and 95% CI.

    Returns
    -------
    dict
        ``main`` (sentences on the headline outcome), ``others`` (one per other outcome),
        ``unchanged`` (outcomes without a clear difference at the last wave), ``whom``
        (subgroups), ``design`` (what the design can and cannot say).
    """
    out: dict[str, Any] = {"main": [], "others": [], "unchanged": [], "whom": [], "design": []}
    end_wave = config.program_end_wave
    last_wave = max(w.index for w in config.waves if not w.planned)
    if headline is not None:
        series = gap_series(headline, analyses, effects, labels, pub)
        what = labels.construct_lower(headline)
        if series:
            parts = [(labels.wave(s["wave"], short=True), s["cell"]) for s in series]
            kind = ("the gap between dialogue participants and the comparison group"
                    if series[0]["source"] == "durability" else
                    "how much more dialogue participants changed than the comparison group "
                    "since baseline")
            out["main"].append(Lazy(lambda parts=parts, kind=kind, what=what: (
                f"<strong>{_esc(what[:1].upper() + what[1:])}</strong> — {kind}: " + "; ".join(
                    f"{_esc(w)}: <strong>{c}</strong>" for w, c in parts) + ".")))
            end = next((s for s in series if s["wave"] == end_wave), None)
            last = series[-1]
            if end is not None and last["wave"] != end_wave:
                years = _years(config, end_wave, last["wave"])
                faded = not (last["ci_low"] > 0 or last["ci_high"] < 0)
                out["main"].append(Lazy(lambda end=end, last=last, years=years, faded=faded: (
                    f"At the end of the programme the gap was {end['cell']}; {years} later "
                    f"({_esc(labels.wave(last['wave'], short=True))}) it was {last['cell']}"
                    + (": smaller, and no longer clearly different from zero." if faded
                       else "."))))
        for name, _spec, per in analyses.frames("durability", "persistence",
                                                 headline):
            per = per.sort_values("wave")
            if per.empty:
                continue
            r = per.iloc[-1].to_dict()
            n = min(int(r.get("n_treated") or 0), int(r.get("n_comparison") or 0))
            cell = pub.stat("findings", (name, int(r["wave"]), "persistence"), n,
                            f"{pct(r['estimate'])} (95% CI {pct(r['ci_low'])} to "
                            f"{pct(r['ci_high'])})")
            wl = labels.wave(int(r["wave"]), short=True)
            out["main"].append(Lazy(lambda cell=cell, wl=wl: (
                f"How much of the end-of-programme gain persists: at {_esc(wl)}, "
                f"<strong>{cell}</strong> of it remained.")))
            break
        else:
            out["main"].append("How much of the end-of-programme gain persists was not "
                               "estimated: the analysis plan has no durability analysis.")
    for outcome in outcomes:
        series = gap_series(outcome, analyses, effects, labels, pub)
        if not series:
            continue
        last = series[-1]
        ever = any(s["ci_low"] > 0 for s in series)
        state = ("higher" if last["ci_low"] > 0 else "lower" if last["ci_high"] < 0 else
                 "unclear")
        wl = labels.wave(last["wave"], short=True)
        tail = {"higher": ".", "lower": ": lower than the comparison group's.",
                "unclear": ": no clear difference from the comparison group."}[state]
        text = Lazy(lambda last=last, wl=wl, outcome=outcome, tail=tail: (
            f"{_esc(labels.construct(outcome))}: at {_esc(wl)} the gap was {last['cell']}"
            + tail))
        if outcome != headline:
            out["others"].append(text)
        if state != "higher":
            why = ("never clearly higher than the comparison group's at any wave" if not ever
                   else "clearly higher earlier, but not at the last wave")
            out["unchanged"].append(Lazy(lambda last=last, wl=wl, outcome=outcome, why=why: (
                f"{_esc(labels.construct(outcome))}: {why}; at {_esc(wl)} the gap was "
                f"{last['cell']}.")))
    by_mod: dict[str, list[dict[str, Any]]] = {}
    for f in forest:
        by_mod.setdefault(f["moderator"], []).append(f)
    for mod, items in by_mod.items():
        cells = []
        for f in items:
            d = f["digits"]
            cells.append((f["level_label"], pub.stat(
                "findings", (f["name"], mod, f["level"], "subgroup"), f["n"],
                f"{num(f['estimate'], d, f['factor'])} {f['unit']} (95% CI "
                f"{num(f['ci_low'], d, f['factor'])} to {num(f['ci_high'], d, f['factor'])})")))
        what = labels.construct_lower(items[0]["outcome"])
        note = items[0]["notes"].split(";")[0] if items[0]["notes"] else ""
        out["whom"].append(Lazy(lambda cells=cells, mod=items[0]["moderator_label"],
                            what=what, note=note: (
            f"{_esc(what[:1].upper() + what[1:])} by {_esc(mod)}"
            + (f" ({note}, dialogue minus comparison)" if note else "") + ": "
            + "; ".join(f"{_esc(lv)} {c}" for lv, c in cells) + ".")))
    # what the design can and cannot say
    comparison = labels.comparison
    t = labels.treated
    if comparison is not None:
        out["design"].append(
            "Dialogue participants are compared with a comparison group of non-participants. "
            "Participants were not assigned at random, so a gap is the dialogue's effect only "
            "if both groups would have changed alike without it (parallel trends); baseline "
            "differences are removed by comparing change since baseline, but differences in "
            "how people would have changed are not.")
    else:
        out["design"].append("There is no comparison group: changes over time cannot be "
                             "separated from what happened to everyone (history).")
    if (last_wave, t) in retained and comparison is not None and (last_wave, comparison) in \
            retained:
        a, b = retained[(last_wave, t)], retained[(last_wave, comparison)]
        out["design"].append(Lazy(lambda a=a, b=b: (
            f"Drop-out: by the last wave {a} of dialogue participants and {b} of the comparison "
            "group were still answering; estimates assume those who left would have changed "
            "like those with the same earlier answers (missing at random).")))
    if people is not None:
        out["design"].append(
            "The results describe the people who took part in these dialogues and this "
            "survey, measured by what they said; they do not show changes in policy or in the "
            "conflict itself.")
    out["design"].append(
        "Context events (marked on every trajectory) affected both groups; comparing the "
        "groups removes their common effect, not effects that differed between them.")
    return out


def _years(config: StudyConfig, a: int | None, b: int) -> str:
    t = config.wave_time()
    if a is None:
        return "later"
    y = t[b] - t[a]
    return f"{y:.0f} year{'s' if round(y) != 1 else ''}" if y >= 0.95 else f"{12 * y:.0f} months"


# ----------------------------------------------------------------------- per dialogue
def objective_outputs(objective: str) -> list[str]:
    """The Allen–Sharp outputs a stated objective speaks to, by its words."""
    text = objective.lower()
    return [o for o, words in _OBJECTIVE_WORDS.items() if any(w in text for w in words)]


def dialogue_tables(d: Any, scores: pd.DataFrame, labels: Labels, pub: Publication,
                    response: dict[tuple[int, str], Shown]) -> dict[str, Any]:
    """Register one dialogue's own numbers: respondents per wave and observed means.

    The dialogue's respondents are a part of the dialogue arm's (the pooled table), related
    as such so both are protected together.
    """
    mine = scores[scores["dialogue"] == d.id]
    treated = labels.treated
    resp = (mine[mine["arm"] == treated].groupby("wave")["participant"].nunique())
    rows, cells = [], []
    for w in labels.config.waves:
        n = int(resp.get(w.index, 0))
        if w.planned:
            continue
        cell = pub.count("response_dialogue", (w.index, d.id), n)
        cells.append(cell)
        rows.append([labels.wave(w.index, short=True), cell])
    pub.tables.same_pattern([c.id for c in cells])
    table = Table(f"respondents-{d.id}", "Respondents per wave", ["Wave", "Respondents"], rows)
    means = []
    for construct in panel_constructs(labels):
        unit = labels.unit(construct)
        sub = scores[(scores["construct"] == construct) & scores["score"].notna()]
        for w in labels.config.waves:
            for grp, where in ((d.id, (sub["dialogue"] == d.id) & (sub["arm"] == treated)),
                               ("comparison", sub["arm"] == labels.comparison)):
                vals = sub.loc[where & (sub["wave"] == w.index), "score"]
                if len(vals) < 2:
                    text = "–"
                else:
                    half = stats.t.ppf(0.975, len(vals) - 1) * vals.std() / math.sqrt(len(vals))
                    text = (f"{num(vals.mean(), unit.digits, unit.factor)} "
                            f"[{num(vals.mean() - half, unit.digits, unit.factor)}, "
                            f"{num(vals.mean() + half, unit.digits, unit.factor)}]")
                table_name = "dialogue_means" if grp != "comparison" else "comparison_means"
                means.append((construct, w.index, grp,
                              pub.stat(table_name, (grp, construct, w.index) if grp !=
                                       "comparison" else (construct, w.index), len(vals), text)))
    mtables = []
    for construct in panel_constructs(labels):
        unit = labels.unit(construct)
        rows = []
        for w in labels.config.waves:
            cell = {g: c for (con, wi, g, c) in means if con == construct and wi == w.index}
            if cell:
                rows.append([labels.wave(w.index, short=True), cell.get(d.id, "–"),
                             cell.get("comparison", "–")])
        mtables.append(Table(
            f"means-{d.id}-{construct}", f"{labels.construct(construct)}: observed means "
            f"({unit.level or unit.effect}, 95% CI)",
            ["Wave", d.name, labels.arm(labels.comparison)], rows))
    return {"respondents": table, "means": mtables,
            "outputs": objective_outputs(d.objectives or "")}


def relate_dialogues(pub: Publication, response: dict[tuple[int, str], Shown], treated: str,
                     waves: list[int], dialogues: list[str]) -> None:
    """The dialogues' respondents add up to the dialogue arm's (a margin between pages)."""
    for w in waves:
        parts = [("response_dialogue", (w, d)) for d in dialogues]
        if (w, treated) in response and all(p in pub.tables.cells for p in parts):
            pub.tables.total(response[(w, treated)].id, parts, exact=False,
                             name=f"wave {w}: dialogue arm = sum of dialogues")


def slug(text: str) -> str:
    """A file-name-safe form of a dialogue id."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "dialogue"
