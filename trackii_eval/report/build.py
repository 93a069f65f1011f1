"""Build the impact report from stored scores and results; nothing is refitted here.

Disclosure control: every number the report prints is first registered with a
:class:`~trackii_eval.report.disclose.Publication` (counts, with the relations between them
across tables and waves; statistics with the number of people they describe), then one call of
:func:`trackii_eval.disclosure.protect` applies primary and complementary suppression to all of
them together and audits the result with an LP attacker; only then is the HTML rendered. No
pseudonym, raw ID or identifier column is read.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd
from scipy import stats

from .. import __version__
from ..errors import ModelError, ReportError
from ..models.results import result_from_dict
from . import layout, pages
from .disclose import OBSERVATIONS, PARTICIPANTS, Lazy, Publication, Shown, respondents
from .labels import Labels
from .scale import DIFFERENCE, EffectScale, effect_scale
from .sections import Analyses

if TYPE_CHECKING:
    from ..config import Instrument, StudyConfig
    from ..pipeline.context import StudyContext
    from ..pipeline.provenance import RunRecord
    from ..store import Store

__all__ = ["ReportPages", "ReportTables", "render_report", "render_reports", "report_tables",
           "suppress_count"]


@dataclass(frozen=True)
class _View:
    """What the report's sections read: the store and the study's configuration."""

    store: Store
    config: StudyConfig
    instrument: Instrument


def suppress_count(n: int | float, k: int) -> str:
    """A single count with only its own primary suppression (``<k``).

    Not safe on its own when totals or other tables are printed beside it: use
    :func:`report_tables` / :func:`trackii_eval.disclosure.protect` for published output.
    """
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    n = int(n)
    return f"<{k}" if 0 < n < k else str(n)


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _p(p: Any) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_phrase(p: Any) -> str:
    """A p-value for running text: "p < 0.001", "p = 0.012" (never "p = <0.001")."""
    text = _p(p)
    return "p –" if text == "–" else ("p < 0.001" if text == "<0.001" else f"p = {text}")


def _observed_means(scores: pd.DataFrame, construct: str, k: int) -> pd.DataFrame:
    sub = scores[(scores["construct"] == construct) & scores["score"].notna()]
    g = sub.groupby(["arm", "wave", "time"])["score"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out = out[out["count"] >= k]  # small cells are not published
    half = stats.t.ppf(0.975, np.maximum(out["count"] - 1, 1)) * out["std"] / np.sqrt(out["count"])
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out


def _response_table(study: _View, pub: Publication, ctx: _Ctx) -> list[dict[str, Any]]:
    """Respondents per wave and arm; the same suppression pattern for an arm in every wave."""
    df = study.store.query("""
        SELECT s.wave, p.arm, count(DISTINCT s.participant) AS n
        FROM submissions s JOIN files f ON f.sha256 = s.sha256 AND f.active
        JOIN participants p USING (participant)
        WHERE s.excluded_reason IS NULL GROUP BY 1, 2 ORDER BY 1, 2
    """)
    if df.empty:
        return []
    # a participant without an arm (an unknown code, no participant list) is shown as such,
    # never as "nan"
    df["arm"] = df["arm"].astype(object).where(df["arm"].notna(), "(no arm)")
    first = int(df["wave"].min())
    base = df[df["wave"] == first].set_index("arm")["n"]
    labels = {w.index: w.label for w in study.config.waves}
    for (wave, arm), n in df.set_index(["wave", "arm"])["n"].items():
        ctx.response[(int(wave), arm)] = pub.count("response", (int(wave), arm), int(n),
                                                    quantity=respondents(int(wave), arm))
    for wave, sub in df.groupby("wave"):
        # Respondents of a wave over all arms: not printed here, but printed elsewhere (files
        # stored, reliability n, attrition n): an attacker's hub between tables.
        total = pub.hidden("respondents", (int(wave),), int(sub["n"].sum()))
        ctx.total[int(wave)] = total
        pub.tables.total(total, [ctx.response[(int(wave), a)].id for a in sub["arm"]],
                         name=f"wave {wave} respondents = sum over arms")
    for arm in df["arm"].unique():  # periodic table: one pattern across waves
        pub.tables.same_pattern([c.id for (w, a), c in ctx.response.items() if a == arm])
    # Baseline respondents still answering a later wave: when nobody joined after baseline,
    # the people who left since baseline are baseline - respondents, a group like any other,
    # so they are a hidden count related to the printed ones (protected when small).
    kept = study.store.query(f"""
        WITH r AS (SELECT DISTINCT s.participant, s.wave,
                          coalesce(p.arm, '(no arm)') AS arm FROM submissions s
                   JOIN files f ON f.sha256 = s.sha256 AND f.active
                   JOIN participants p USING (participant) WHERE s.excluded_reason IS NULL)
        SELECT r.wave, r.arm, count(*) AS n FROM r
        JOIN r b ON b.participant = r.participant AND b.wave = {first}
        GROUP BY 1, 2
    """).set_index(["wave", "arm"])["n"]
    rows = []
    for (wave, arm), n in df.set_index(["wave", "arm"])["n"].items():
        cell = ctx.response[(int(wave), arm)]
        b = base.get(arm)
        if b is None:
            retained: Any = "–"
        else:
            r = int(kept.get((wave, arm), 0))
            # nobody joined and somebody left: the leavers are b - n (no one left: no group)
            if int(wave) != first and int(n) == r < int(b):
                left = pub.hidden("retention", (int(wave), arm, "left since baseline"),
                                  int(b) - r)
                pub.tables.total(ctx.response[(first, arm)].id, [cell.id, left],
                                 name=f"wave {wave} {arm}: baseline = respondents + left")
            retained = pub.share(
                "response_retained", (int(wave), arm), r, int(b), f"{100 * r / b:.0f}%",
                depends=[cell.id, ctx.response[(first, arm)].id])
        if not isinstance(retained, str):
            ctx.retained[(int(wave), arm)] = retained
        rows.append({"wave": wave, "label": labels.get(wave, ""), "arm": arm, "n": cell,
                     "retained": retained})
    return rows


class _Ctx:
    """Cells other tables relate to (so relations across tables can be written)."""

    def __init__(self) -> None:
        self.response: dict[tuple[int, str], Shown] = {}
        self.total: dict[int, Any] = {}
        self.reliability: dict[tuple[str, int], Shown] = {}
        self.linkage: dict[tuple[int, str], Shown] = {}
        self.network: dict[tuple[str, int], Shown] = {}
        # effect cells by (model, term): estimate, ci, p, df (reused by the findings)
        self.effects: dict[tuple[str, str], dict[str, Any]] = {}
        # model counts by model: (observations, participants or None)
        self.model_n: dict[str, tuple[Shown, Shown | None]] = {}
        self.people: Shown | None = None
        self.retained: dict[tuple[int, str], Shown] = {}
        self.labels: Labels | None = None


def _attrition(scores: pd.DataFrame, study: _View, pub: Publication,
               ctx: _Ctx) -> dict[str, Any] | None:
    """Baseline perceptions of those who answered the last wave vs those who did not."""
    construct = "perceptions" if "perceptions" in set(scores["construct"]) else None
    if construct is None:
        return None
    k = pub.k
    first, last = study.config.waves[0].index, study.config.waves[-1].index
    sub = scores[scores["construct"] == construct]
    base = sub[sub["wave"] == first].set_index("participant")["score"].dropna()
    stayed = set(sub.loc[(sub["wave"] == last) & sub["score"].notna(), "participant"])
    s = base[base.index.isin(stayed)]
    left = base[~base.index.isin(stayed)]
    if len(s) < k or len(left) < k:
        return None
    t = stats.ttest_ind(s, left, equal_var=False)
    n_s = pub.count("attrition", ("stayed",), len(s))
    n_l = pub.count("attrition", ("left",), len(left))
    # An attacker would try: stayed = respondents of the last wave; stayed + left = baseline.
    if last in ctx.total:
        pub.tables.same(n_s.id, ctx.total[last], name="attrition stayed = last wave respondents")
    if first in ctx.total:
        pub.tables.total(ctx.total[first], [n_s.id, n_l.id], exact=False,
                         name="baseline = stayed + left")
    small = min(len(s), len(left))
    return {
        "construct": construct, "n_stayed": n_s, "n_left": n_l,
        "construct_label": (ctx.labels.construct_lower(construct) if ctx.labels is not None
                            else construct),
        "mean_stayed": pub.stat("attrition", ("mean_stayed",), len(s), _fmt(s.mean(), 1)),
        "mean_left": pub.stat("attrition", ("mean_left",), len(left), _fmt(left.mean(), 1)),
        "diff": pub.stat("attrition", ("diff",), small, _fmt(s.mean() - left.mean(), 1)),
        "p": pub.stat("attrition", ("p",), small, _p_phrase(float(t.pvalue))), "last_wave": last,
    }


def _moderation(scores: pd.DataFrame, study: _View, pub: Publication,
                ctx: _Ctx) -> list[dict[str, Any]]:
    sub = scores[(scores["output"] == "moderation") & scores["score"].notna()]
    rows = []
    cells = []
    for d in study.config.dialogues:
        vals = sub.loc[sub["dialogue"] == d.id, "score"]
        native = sum(m.native_language for m in d.moderators)
        team = ", ".join(
            f"{m.type}{' (native language)' if m.native_language else ''}" for m in d.moderators
        ) + f" — {native} of {len(d.moderators)} native speakers"
        n = pub.count("moderation", (d.id,), len(vals))
        cells.append(n)
        for (dialogue, wave), net in ctx.network.items():
            if dialogue == d.id:
                pub.tables.same(n.id, net.id, name=f"moderation n = network n ({d.id}, {wave})")
        if len(vals) < 2:
            rows.append({"dialogue": d.id, "name": d.name, "n": n,
                         "mean": pub.stat("moderation", (d.id, "mean"), len(vals), "–"),
                         "ci": "", "team": team})
            continue
        half = stats.t.ppf(0.975, len(vals) - 1) * vals.std() / math.sqrt(len(vals))
        rows.append({
            "dialogue": d.id, "name": d.name, "n": n,
            "mean": pub.stat("moderation", (d.id, "mean"), len(vals), _fmt(vals.mean(), 1)),
            "ci": pub.stat("moderation", (d.id, "ci"), len(vals),
                           f"[{vals.mean() - half:.1f}, {vals.mean() + half:.1f}]"),
            "team": team})
    for (construct, wave), rel in ctx.reliability.items():
        if construct == "moderation":
            pub.tables.total(rel.id, [c.id for c in cells], exact=False,
                             name=f"moderation reliability n (wave {wave}) = sum of dialogues")
    return rows


def _ideas(study: _View, scores: pd.DataFrame, pub: Publication) -> list[dict[str, Any]]:
    """Idea-log metrics (counts of ideas, not of people) and participants' own ratings."""
    if not study.store.has_table("idea_metrics"):
        return []
    metrics = study.store.query("SELECT * FROM idea_metrics ORDER BY dialogue")
    ratings = scores[(scores["output"] == "ideas") & scores["score"].notna()]
    rows = []
    for m in metrics.to_dict(orient="records"):
        own = ratings.loc[ratings["dialogue"] == m["dialogue"], "score"]
        # the log counts ideas, not people; its numbers describe the dialogue's participants
        members = int(scores.loc[scores["dialogue"] == m["dialogue"], "participant"].nunique())

        def st(field: str, text: str, d: Any = m["dialogue"], n: int = members) -> Shown:
            return pub.stat("ideas", (d, field), n, text)

        rows.append({
            "dialogue": m["dialogue"], "n": st("n_ideas", str(int(m["n_ideas"]))),
            "per_workshop": st("per_workshop", _fmt(m["ideas_per_workshop"], 1)),
            "cross_side": st("cross_side", f"{100 * m['cross_side_share']:.0f}%"),
            "transferred": st("transferred", f"{100 * m['transferred_share']:.0f}%"),
            "adopted": st("adopted", f"{100 * m['adopted_share']:.0f}%"),
            "self_rating": pub.stat("ideas", (m["dialogue"], "self_rating"), len(own),
                                    _fmt(own.mean(), 1) if len(own) else "–"),
        })
    return rows


LINKAGE_PARTS = ("exact", "fuzzy", "decision", "new", "ambiguous")


def _linkage_rows(study: _View, pub: Publication, ctx: _Ctx) -> list[dict[str, Any]]:
    """Linkage counts per wave (they count people's records)."""
    if not study.store.has_table("linkage"):
        return []
    rows = []
    records = study.store.query("SELECT * FROM linkage ORDER BY wave").to_dict(orient="records")
    if not records:
        return []
    base_n = int(records[0]["records"])
    for r in records:
        w = int(r["wave"])
        cells = {c: pub.count("linkage", (w, c), int(r[c])) for c in ("records", *LINKAGE_PARTS)}
        for c, cell in cells.items():
            ctx.linkage[(w, c)] = cell
        pub.tables.total(cells["records"].id, [cells[c].id for c in LINKAGE_PARTS],
                         exact=False, name=f"linkage wave {w}: records = sum of outcomes")
        rate = float(r["match_rate"])
        rows.append({
            "wave": w, **cells,
            "match_rate": pub.share("linkage_rate", (w,), round(rate * base_n), base_n,
                                    f"{100 * rate:.0f}%"),
        })
    return rows


def _item_flags(study: _View, pub: Publication) -> list[dict[str, Any]]:
    """Items a reviewer would ask about: weak item-rest correlation, floor or ceiling effects."""
    if not study.store.has_table("item_statistics"):
        return []
    items = study.store.query("SELECT * FROM item_statistics")
    if items.empty:
        return []
    items = items[items["n"] >= pub.k]
    weak = (items["r_drop"] < 0.3) | (items["floor_share"] > 0.15) | (
        items["ceiling_share"] > 0.15)
    rows = []
    for r in items[weak].sort_values(["construct", "item", "wave"]).to_dict(orient="records"):
        key = (r["construct"], r["item"], int(r["wave"]))
        n = int(r["n"])
        rows.append({
            "construct": r["construct"], "item": r["item"], "wave": r["wave"],
            "r_drop": pub.stat("item_flags", (*key, "r_drop"), n, _fmt(r["r_drop"])),
            "alpha_if_deleted": pub.stat("item_flags", (*key, "alpha"), n,
                                         _fmt(r["alpha_if_deleted"])),
            "floor": pub.share("item_flags", (*key, "floor"), round(r["floor_share"] * n), n,
                               f"{100 * r['floor_share']:.0f}%"),
            "ceiling": pub.share("item_flags", (*key, "ceiling"), round(r["ceiling_share"] * n),
                                 n, f"{100 * r['ceiling_share']:.0f}%"),
        })
    return rows


def _invariance_rows(study: _View, pub: Publication) -> list[dict[str, Any]]:
    if not study.store.has_table("invariance"):
        return []
    inv = study.store.query("SELECT * FROM invariance")
    rows = []
    for r in inv.to_dict(orient="records"):
        n = int(r.get("n") or 0)
        key = (r.get("construct"), r.get("model"))

        def st(name: str, text: str, n: int = n, key: tuple = key) -> Shown:
            return pub.stat("invariance", (*key, name), n, text)

        rows.append({
            "construct": r.get("construct"), "model": r.get("model"),
            "chisq": st("chisq", _fmt(r.get("chisq"))), "df": r.get("df"),
            "cfi": st("cfi", _fmt(r.get("cfi"), 3)), "rmsea": st("rmsea", _fmt(r.get("rmsea"), 3)),
            "srmr": st("srmr", _fmt(r.get("srmr"), 3)),
            "delta_cfi": st("delta_cfi", _fmt(r.get("delta_cfi"), 3)),
            "decision": r.get("decision"),
            "n": pub.count("invariance", (r.get("construct"), "n"), n, quantity=PARTICIPANTS),
            "waves": r.get("waves"),
            "missing": r.get("missing") or "listwise",
        })
    return rows


def _network_rows(study: _View, pub: Publication, ctx: _Ctx) -> list[dict[str, Any]]:
    if not study.store.has_table("network"):
        return []
    net = study.store.query("SELECT * FROM network ORDER BY dialogue, wave")
    rows = []
    for r in net.to_dict(orient="records"):
        d, w, n = r["dialogue"], int(r["wave"]), int(r["n_participants"])
        cell = pub.count("network", (d, w), n)
        ctx.network[(d, w)] = cell
        persisting = r["persisting"]
        rows.append({
            "dialogue": d, "wave": w, "n": cell,
            "density": pub.stat("network", (d, w, "density"), n, _fmt(r["cross_density"], 3)),
            "reciprocity": pub.stat("network", (d, w, "reciprocity"), n,
                                    _fmt(r["cross_reciprocity"], 2)),
            # ties, not people, but few ties mean few people who named someone
            "working": pub.count("network_ties", (d, w), int(r["working_ties"])),
            "persisting": "–" if persisting is None or not math.isfinite(persisting)
            else pub.stat("network", (d, w, "persisting"), n, f"{100 * persisting:.0f}%"),
        })
    treated = study.config.treated_arm
    for w in sorted({w for _, w in ctx.network}):
        parts = [c.id for (_, ww), c in ctx.network.items() if ww == w]
        if (w, treated) in ctx.response:
            pub.tables.total(ctx.response[(w, treated)].id, parts, exact=False,
                             name=f"network wave {w}: {treated} respondents = sum of dialogues")
    return rows


def _fitted(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The stored results of fitted models; the plan's "change that matters" analyses
    (tables with counts, ``analysis.PLAN_ANALYSES``) are laid out by :mod:`.sections`."""
    from ..analysis import PLAN_ANALYSES

    return {n: r for n, r in results.items() if r.get("kind") not in PLAN_ANALYSES}


def _stored_fit(res: dict[str, Any]) -> Any:
    """A stored result as a fit of the results protocol (nothing is refitted)."""
    try:
        return result_from_dict(res["fit"])
    except ModelError as exc:
        name = res.get("spec", {}).get("name", "?")
        raise ReportError(f"stored result of model '{name}': {exc}") from None


def _scale_of(res: dict[str, Any]) -> EffectScale:
    """The stored fit's printing scale; a link the report cannot print is a loud refusal."""
    try:
        return effect_scale(res)
    except ValueError as exc:
        raise ReportError(str(exc)) from None


def _tidy_row(model: str, row: dict[str, Any], label: str, warn: bool,
              factor: float = 1.0, scale: EffectScale = DIFFERENCE) -> dict[str, Any]:
    """A tidy row as printed: a difference times the unit's ``factor``, or, for a fit on a
    link scale, on ``scale`` (a ratio is ``exp`` of the coefficient; never scaled)."""
    estimable = bool(row.get("estimable", True))

    def f(x: Any) -> str:
        return _fmt(scale.value(x, factor))

    return {
        "model": model, "term": row["term"],
        "estimate": f(row["estimate"]) if estimable else "not estimable",
        "ci": f"[{f(row['ci_low'])}, {f(row['ci_high'])}]" if estimable
        else str(row.get("note", "")),
        "df": _fmt(row.get("df"), 1), "p": _p(row.get("p_value")), "label": label, "warn": warn,
    }


def _group_sizes(scores: pd.DataFrame, outcome: str) -> tuple[int, dict[int, int]]:
    """People per arm behind a model of ``outcome``: smallest arm overall, and per wave."""
    sub = scores[(scores["construct"] == outcome) & scores["score"].notna()]
    if sub.empty:
        return 0, {}
    overall = int(sub.groupby("arm")["participant"].nunique().min())
    per_wave = sub.groupby(["wave", "arm"])["participant"].nunique().groupby("wave").min()
    return overall, {int(w): int(n) for w, n in per_wave.items()}


def _effect_rows(results: dict[str, dict[str, Any]], scores: pd.DataFrame,
                 pub: Publication, ctx: _Ctx) -> list[dict[str, Any]]:
    """Every fit's effect terms (role "effect" in the protocol's tidy table) and contrasts;
    each describes the smaller of the groups it compares (per wave for a wave's effect)."""
    rows = []
    for name, res in results.items():
        spec = res["spec"]
        fit = _stored_fit(res)
        label, warn = spec.get("label", ""), bool(fit.warnings)
        outcome = spec.get("outcome", "")
        scale = _scale_of(res)
        # a unit's factor (x100 for a yes/no share) applies to differences in the outcome's
        # units only, never to a link-scale coefficient (log odds, log rate, probit)
        factor = (ctx.labels.unit(outcome).factor if ctx.labels is not None else 1.0) \
            if scale.difference else 1.0
        overall, per_wave = _group_sizes(scores, outcome)
        tab = fit.tidy()
        terms = [*tab[tab["role"] == "effect"].to_dict("records"), *res.get("contrasts", [])]
        for row in terms:
            wave = re.search(r"wave(\d+)$", str(row["term"]))
            n = per_wave.get(int(wave.group(1)), 0) if wave else overall
            shown = _tidy_row(name, row, label, warn, factor, scale)

            def st(field: str, n: int = n, term: str = str(row["term"]),
                   text: Any = "", name: str = name) -> Shown:
                return pub.stat("effects", (name, term, field), n, text)

            for part in ("estimate", "ci", "p"):
                shown[part] = st(part, text=shown[part])
            # degrees of freedom can be a count in disguise (t with G - 1 df for participant-
            # clustered errors): hidden whenever the model's participant count is
            shown["df"] = pub.stat("effects", (name, str(row["term"]), "df"), n, shown["df"],
                                   depends=[("model_n", (name, "participants"))]
                                   if fit.record.n_groups.get("participant") is not None
                                   else [])
            shown.update(outcome=outcome, n=n, raw=row, factor=factor, scale=scale)
            ctx.effects[(name, str(row["term"]))] = shown
            rows.append(shown)
    return rows


def _model_counts(results: dict[str, dict[str, Any]], pub: Publication, ctx: _Ctx) -> None:
    """Register each model's observations and participants (printed in effects tables)."""
    for name, res in results.items():
        if "fit" not in res:
            continue
        rec = _stored_fit(res).record
        groups = rec.n_groups.get("participant")
        nobs = pub.count("model_n", (name, "observations"), int(rec.n_obs),
                         quantity=OBSERVATIONS)
        ngroups = None if groups is None else pub.count("model_n", (name, "participants"),
                                                         int(groups), quantity=PARTICIPANTS)
        ctx.model_n[name] = (nobs, ngroups)


def _methods(study: _View, results: dict[str, dict[str, Any]], n_people: int, n_obs: int,
             scores: pd.DataFrame, pub: Publication, ctx: _Ctx) -> list[Any]:
    out: list[Any] = []
    cfg = study.config
    k = pub.k
    people = pub.count("analysed", ("participants",), n_people, quantity=PARTICIPANTS)
    ctx.people = people
    obs = pub.count("analysed", ("participant_waves",), n_obs, quantity=OBSERVATIONS)
    pub.tables.total(obs.id, list(ctx.total.values()), exact=False,
                     name="participant-waves = sum of respondents over waves")
    news = [c.id for (_, col), c in ctx.linkage.items() if col == "new"]
    if news:
        pub.tables.total(people.id, news, exact=False,
                         name="participants = sum of new records over waves")
    too_few = scores[scores["status"] == "too_few_items"].groupby("construct").size()
    missing_cells = {c: pub.count("scores_missing", (c,), int(n)) for c, n in too_few.items()}

    def _label(c: str) -> str:
        return html.escape(ctx.labels.construct(c) if ctx.labels is not None else c)
    out.append(Lazy(lambda: (
        f"Responses from {len(cfg.waves)} waves were scored per construct as keyed item means "
        "on the 0-100 percent-of-maximum-possible (POMP) scale: 0 is the lowest possible answer "
        "to every item, 100 the highest (behavioural measures in their own units: counts, "
        "tokens, or the share answering yes); a score is missing "
        "when fewer than the construct's minimum share of items was answered (participant-waves "
        "without a score for that reason: "
        f"{'; '.join(f'{_label(c)}: {cell}' for c, cell in missing_cells.items()) or 'none'}). "
        "Test "
        "and unfinished responses were excluded.")))
    for name, res in results.items():
        if "fit" not in res:
            continue
        fit = _stored_fit(res)
        rec = fit.record
        outcome = res["spec"].get("outcome", "")
        n_model = int(rec.n_obs)
        groups = rec.n_groups.get("participant")
        nobs, ngroups = ctx.model_n[name]
        rel = [c.id for (con, _), c in ctx.reliability.items() if con == outcome]
        if rel:
            pub.tables.total(nobs.id, rel, exact=False,
                             name=f"{name}: observations = sum of reliability n")
        if outcome in missing_cells:
            pub.tables.candidate(
                {obs.id: 1.0, nobs.id: -1.0, missing_cells[outcome].id: -1.0},
                name=f"{name}: observations = participant-waves - missing scores")
        # Whoever the model left out is a difference of two printed counts: a group of
        # people like any other, protected when small.
        if 0 <= n_obs - n_model:
            gap = pub.hidden("model_n", (name, "observations left out"), n_obs - n_model)
            pub.tables.total(obs.id, [nobs.id, gap],
                             name=f"{name}: observations + left out = participant-waves")
        if ngroups is not None and 0 <= n_people - int(groups):
            gap = pub.hidden("model_n", (name, "participants left out"), n_people - int(groups))
            pub.tables.total(people.id, [ngroups.id, gap],
                             name=f"{name}: participants + left out = all participants")
        # the fit's own methods sentence, its counts replaced by the protected cells
        label = ctx.labels.model(name) if ctx.labels is not None else name
        sentence = f"<strong>{html.escape(label)}</strong> (<code>{html.escape(name)}</code>): " \
            + html.escape(fit.describe())
        n_text = f"{rec.n_obs} observations of "
        g_text = f"{groups} participants"
        out.append(Lazy(lambda sentence=sentence, n_text=n_text, g_text=g_text, nobs=nobs,
                    ngroups=ngroups: sentence.replace(n_text, f"{nobs} observations of ", 1)
                    .replace(g_text, f"{ngroups} participants", 1)))
    out.append(
        "Reliability per construct and wave: Cronbach's alpha with the Feldt interval "
        "(pairwise-complete covariances, as psych::alpha) and McDonald's omega total from a "
        "one-factor maximum-likelihood model with a 200-resample percentile bootstrap interval."
    )
    out.append(Lazy(lambda: (
        f"Disclosure control: every number that describes fewer than {k} people (counts, "
        "percentages, means, model statistics) is suppressed, and so is every further number "
        "from which one of them could be computed or narrowed, through totals, other tables "
        "or other waves (complementary suppression chosen by integer programming over all "
        "tables at once, then audited by an attacker's linear programs; Hundepool et al. 2012). "
        f"Suppressed numbers are shown as <code>{pub.result.marker if pub.result else 'x'}"
        f"</code>; {pub.result.counts.get('primary', 0) if pub.result else 0} were suppressed "
        "for describing too few people and "
        f"{pub.result.counts.get('secondary', 0) if pub.result else 0} to protect them. "
        f"{people} participants and {obs} participant-waves were analysed.")))
    return out


def _files_and_problems(study: _View, pub: Publication,
                        ctx: _Ctx) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows per ingested file and quarantine counts per rule, with their relations."""
    store = study.store
    files = store.file_summary()
    per_wave = files.groupby("wave").size()
    rows = []
    quarantined: dict[str, Shown] = {}
    for f in files.to_dict(orient="records"):
        key = (f["file"],)
        read = pub.count("files", (*key, "read"), int(f["rows_read"]))
        stored = pub.count("files", (*key, "stored"), int(f["rows_stored"]))
        quar = pub.count("files", (*key, "quarantined"), int(f["rows_quarantined"]))
        quarantined[f["file"]] = quar
        pub.tables.total(read.id, [stored.id, quar.id], exact=False,
                         name=f"{f['file']}: read = stored + quarantined")
        w = int(f["wave"])
        if per_wave.get(w) == 1:
            if (w, "records") in ctx.linkage:
                pub.tables.same(read.id, ctx.linkage[(w, "records")].id,
                                name=f"wave {w}: rows read = linkage records")
            if w in ctx.total:
                pub.tables.same(stored.id, ctx.total[w], name=f"wave {w}: stored = respondents")
        rows.append({**f, "rows_read": read, "rows_stored": stored, "rows_quarantined": quar})
    problems = store.query("""
        SELECT q.rule, q.scope, q.file, count(*) AS n FROM quarantine q
        JOIN files f ON f.sha256 = q.sha256 AND f.active GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    """)
    out = []
    row_rules: dict[str, list[Any]] = {}
    for (rule, scope), sub in problems.groupby(["rule", "scope"], sort=False):
        # Per-file counts are not printed, but an attacker can reason with them.
        parts = [pub.hidden("quarantine", (rule, scope, file), int(n))
                 for file, n in zip(sub["file"], sub["n"], strict=True)]
        if scope == "row":
            for file, part in zip(sub["file"], parts, strict=True):
                row_rules.setdefault(file, []).append(part)
        cell = pub.count("problems", (rule, scope), int(sub["n"].sum()))
        pub.tables.total(cell.id, parts, name=f"problems {rule}/{scope} = sum over files")
        out.append({"rule": rule, "scope": scope, "n": cell, "_n": int(sub["n"].sum())})
    for file, parts in row_rules.items():
        if file in quarantined:
            pub.tables.total(quarantined[file].id, parts, exact=False,
                             name=f"{file}: quarantined rows = sum of row rules")
    out.sort(key=lambda r: -r.pop("_n"))
    return rows, out


@dataclass
class ReportTables:
    """Everything the impact report and its per-dialogue pages print, registered for
    disclosure control.

    Attributes
    ----------
    publication
        The one :class:`Publication` of the pooled report, the per-dialogue pages and whatever
        else was registered in it (e.g. the dashboard's cells): protect it once, then render.
    context
        The pooled report's template context.
    dialogues
        Per-dialogue template contexts by dialogue id.
    """

    publication: Publication
    context: dict[str, Any]
    dialogues: dict[str, dict[str, Any]] = field(default_factory=dict)


def report_tables(store: Store, context: StudyContext, k: int | None = None, *,
                  model_run: RunRecord | None = None,
                  publication: Publication | None = None) -> ReportTables:
    """Register every number of the impact report and its per-dialogue pages.

    Nothing is protected yet: call ``publication.protect()`` once everything that is published
    together has been registered (the dashboard registers its cells in the same publication).

    Parameters
    ----------
    store : Store
        A study store with scores and model results.
    context : StudyContext
        The study's frozen context.
    k : int, optional
        Minimum cell size; default ``context.config.privacy.min_cell_size`` (or the given
        publication's ``k``).
    model_run : RunRecord, optional
        The model run whose results are reported; ``None``: whatever results are stored.
    publication : Publication, optional
        Register into this publication (joint disclosure control with other outputs); its
        ``k`` must equal ``k`` when both are given.

    Returns
    -------
    ReportTables
        ``publication.protect()`` decides what is printed; ``context`` and ``dialogues`` are
        the template contexts.

    Raises
    ------
    ReportError
        No scores or model results yet, or the publication's k differs from ``k``.
    """
    study = _View(store, context.config, context.instrument)
    stored = store.results(None if model_run is None else model_run.run_id)
    results = {n: r for n, r in _fitted(stored).items() if "fit" in r}
    if not results or not store.has_table("scores"):
        where = "in-memory store" if store.in_memory else str(store.path)
        raise ReportError(f"{where}: no scores or model results yet; run "
                          "`trackii-eval score` and `trackii-eval model` first")
    if publication is not None:
        if k is not None and k != publication.k:
            raise ReportError(f"report: k = {k} differs from the publication's k = "
                              f"{publication.k}; register everything with one k")
        k = publication.k
    k = study.config.privacy.min_cell_size if k is None else k
    pub = publication if publication is not None else Publication(k)
    if pub.result is not None:
        raise ReportError("report: the publication was already protected; register every "
                          "output before calling Publication.protect()")
    ctx = _Ctx()
    labels = Labels(study.config, study.instrument, {n: r["spec"] for n, r in stored.items()})
    ctx.labels = labels
    analyses = Analyses(stored, labels, pub)
    scores = store.query("SELECT * FROM scores")
    reliability = store.query("SELECT * FROM reliability") if store.has_table(
        "reliability") else pd.DataFrame()
    responses = _response_table(study, pub, ctx)
    reliability_rows = _reliability_rows(reliability, pub, ctx)
    linkage = _linkage_rows(study, pub, ctx)
    files, problems = _files_and_problems(study, pub, ctx)
    network = _network_rows(study, pub, ctx)
    n_people = scores["participant"].nunique()
    n_obs = scores[["participant", "wave"]].drop_duplicates().shape[0]
    _model_counts(results, pub, ctx)
    effects = _effect_rows(results, scores, pub, ctx)
    moderation = _moderation(scores, study, pub, ctx)
    ideas = _ideas(study, scores, pub)
    methods = _methods(study, results, n_people, n_obs, scores, pub, ctx)
    page = dict(
        effects=effects, responses=responses,
        attrition=_attrition(scores, study, pub, ctx),
        moderation=moderation, ideas=ideas,
        network=network, invariance=_invariance_rows(study, pub),
        item_flags=_item_flags(study, pub), linkage=linkage, reliability=reliability_rows,
        files=files, problems=problems, methods=methods,
        headline=_headline(results, study, scores, pub, ctx), k=k,
    )
    page.update(layout.pooled(study, labels, analyses, results, scores, pub, ctx, page,
                              n_people))
    if model_run is not None:  # a plan entry without a stored result is a deviation
        plan = model_run.inputs.get("plan") or {}
        for spec in plan.get("models", []) if isinstance(plan, dict) else []:
            if spec.get("name") not in stored:
                page["deviations"].append(
                    f"{spec.get('label') or spec.get('name')}: in the analysis plan, but no "
                    "result was stored by the model run.")
    dialogues = layout.per_dialogue(study, labels, analyses, scores, pub, ctx, page)
    return ReportTables(pub, page, dialogues)


@dataclass
class ReportPages:
    """The files :func:`render_reports` wrote: the pooled report and one page per dialogue."""

    report: Path
    dialogues: dict[str, Path]


def render_report(store: Store, ctx: StudyContext, path: str | Path, *,
                  model_run: RunRecord | None = None, dialogue_dir: str | Path | None = None,
                  ) -> Path:
    """Render the self-contained HTML impact report to ``path`` (and its per-dialogue pages).

    Reads scores, reliability, ingest provenance and stored model results; fits nothing. Every
    printed number passes :func:`trackii_eval.disclosure.protect` first (the pooled report and
    all per-dialogue pages together). Use the report stage
    (:func:`trackii_eval.pipeline.stages.report`), which first checks that the results are
    current and writes the manifest.

    Parameters
    ----------
    store, ctx
        The study store and its frozen context.
    path
        The HTML file to write.
    model_run
        The model run whose results are reported (only its results are read; the report names
        its plan and hash). ``None``: whatever results are stored.
    dialogue_dir
        Folder of the per-dialogue pages (``<id>.html``); default ``dialogues/`` beside
        ``path``.

    Returns
    -------
    Path
        The pooled report (see :func:`render_reports` for every file written).

    Raises
    ------
    ReportError
        No scores or model results yet.
    DisclosureError
        ``privacy.min_cell_size`` is below 5, or the tables cannot be protected.
    """
    return render_reports(store, ctx, path, model_run=model_run,
                          dialogue_dir=dialogue_dir).report


def render_reports(store: Store, ctx: StudyContext, path: str | Path, *,
                   model_run: RunRecord | None = None, dialogue_dir: str | Path | None = None,
                   tables: ReportTables | None = None) -> ReportPages:
    """Render the pooled report and every per-dialogue page; see :func:`render_report`.

    Parameters
    ----------
    tables
        Already registered (and protected) tables, e.g. when the dashboard registered its
        cells in the same publication; ``None``: registered and protected here.
    """
    if tables is None:
        tables = report_tables(store, ctx, model_run=model_run)
    pub = tables.publication
    if pub.result is None:
        pub.protect()
    path = Path(path)
    ddir = Path(dialogue_dir) if dialogue_dir is not None else path.parent / "dialogues"
    links = {d: f"{os.path.relpath(ddir, path.parent)}/{pages.slug(d)}.html"
             for d in tables.dialogues}
    back = os.path.relpath(path, ddir)
    study = _View(store, ctx.config, ctx.instrument)
    results = _fitted(store.results(None if model_run is None else model_run.run_id))
    common = dict(
        study=study.config, generated=dt.date.today().isoformat(), version=__version__,
        config_hash=ctx.config_hash[:12],
        plan=None if model_run is None else {
            "name": model_run.inputs.get("plan_name"),
            "hash": str(model_run.inputs.get("plan_hash"))[:12], "models": list(results),
            "run_id": model_run.run_id, "score_run": model_run.inputs.get("score_run"),
        },
        marker=pub.result.marker if pub.result else "x",
        warnings=[f"{tables.context['_labels'].model(name)}: {w}"
                  for name, res in results.items() if "fit" in res
                  for w in _stored_fit(res).warnings],
    )
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trackii_eval", "report/templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    figs = layout.figures(study, tables, store, results, links)
    html_text = env.get_template("report.html").render(
        **common, **tables.context, **figs, dialogue_links=links)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_text, encoding="utf-8")
    written = {}
    for did, dctx in tables.dialogues.items():
        out = ddir / f"{pages.slug(did)}.html"
        out.parent.mkdir(parents=True, exist_ok=True)
        dfigs = layout.dialogue_figures(study, tables, store, results, did)
        out.write_text(env.get_template("dialogue.html").render(
            **common, **dctx, **dfigs, back=back, k=pub.k), encoding="utf-8")
        written[did] = out
    return ReportPages(path, written)


def _reliability_rows(rel: pd.DataFrame, pub: Publication, ctx: _Ctx) -> list[dict[str, Any]]:
    rows = []
    for r in rel.to_dict(orient="records"):
        n = int(r.get("n", 0))
        c, w = r.get("construct"), int(r.get("wave"))
        cell = pub.count("reliability", (c, w, "n"), n)
        ctx.reliability[(c, w)] = cell
        if w in ctx.total:
            pub.tables.same(cell.id, ctx.total[w], name=f"reliability n {c} wave {w} = "
                            "respondents")

        def st(name: str, text: str, n: int = n, c: Any = c, w: int = w) -> Shown:
            return pub.stat("reliability", (c, w, name), n, text)

        rows.append({
            "construct": c, "wave": w, "n": cell, "k": r.get("k"),
            "alpha": st("alpha", _fmt(r.get("alpha"))),
            "alpha_ci": st("alpha_ci",
                           f"[{_fmt(r.get('alpha_ci_low'))}, {_fmt(r.get('alpha_ci_high'))}]"),
            "omega": st("omega", _fmt(r.get("omega_total"))),
            "omega_ci": st("omega_ci",
                           f"[{_fmt(r.get('omega_ci_low'))}, {_fmt(r.get('omega_ci_high'))}]"),
            "flag": bool(r.get("flag", False)),
        })
    return rows


def _headline(results: dict[str, dict[str, Any]], study: _View, scores: pd.DataFrame,
              pub: Publication, ctx: _Ctx | None = None) -> dict[str, Any] | None:
    """The headline model's contrasts (or, without any, its effect terms) as sentences."""
    for name, res in results.items():
        if not res["spec"].get("headline"):
            continue
        fit = _stored_fit(res)
        rows = res.get("contrasts") or [
            r for r in fit.tidy().to_dict("records") if r["role"] == "effect"
        ]
        if not rows:
            continue
        n, _ = _group_sizes(scores, res["spec"]["outcome"])
        labels = ctx.labels if ctx is not None else None
        unit = labels.unit(res["spec"]["outcome"]) if labels is not None else None
        scale = _scale_of(res)
        factor = unit.factor if unit is not None and scale.difference else 1.0

        def st(field: Any, text: str, n: int = n, name: str = name) -> Shown:
            return pub.stat("headline", (name, field), n, text)

        def f(x: Any, factor: float = factor, scale: EffectScale = scale) -> str:
            return _fmt(scale.value(x, factor), 1 if scale.difference else 2).replace("-", "−")

        return {
            "model": name, "outcome": res["spec"]["outcome"],
            "outcome_label": labels.construct(res["spec"]["outcome"]) if labels else
            res["spec"]["outcome"],
            "unit": (unit.effect if unit is not None else "") if scale.difference
            else f"({scale.name})",
            "label": res["spec"].get("label", ""),
            "rows": [{
                "label": labels.term(name, r["term"]) if labels else r["term"],
                "estimate": st((r["term"], "estimate"), f(r["estimate"]))
                if r.get("estimable", True) else "not estimable",
                "ci": st((r["term"], "ci"), f"{f(r['ci_low'])} to {f(r['ci_high'])}"),
                "p": st((r["term"], "p"), _p_phrase(r["p_value"])),
            } for r in rows],
            "converged": fit.record.converged,
        }
    return None
