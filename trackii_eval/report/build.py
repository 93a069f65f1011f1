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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd
from scipy import stats

from .. import __version__
from ..errors import ModelError, ReportError
from ..models.results import result_from_dict
from .disclose import Lazy, Publication, Shown
from .figures import trajectory_figure

if TYPE_CHECKING:
    from ..config import Instrument, StudyConfig
    from ..pipeline.context import StudyContext
    from ..pipeline.provenance import RunRecord
    from ..store import Store

__all__ = ["ReportTables", "render_report", "report_tables", "suppress_count"]


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
        ctx.response[(int(wave), arm)] = pub.count("response", (int(wave), arm), int(n))
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
        "mean_stayed": pub.stat("attrition", ("mean_stayed",), len(s), _fmt(s.mean(), 1)),
        "mean_left": pub.stat("attrition", ("mean_left",), len(left), _fmt(left.mean(), 1)),
        "diff": pub.stat("attrition", ("diff",), small, _fmt(s.mean() - left.mean(), 1)),
        "p": pub.stat("attrition", ("p",), small, _p(float(t.pvalue))), "last_wave": last,
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
        rows.append({
            "dialogue": m["dialogue"], "n": m["n_ideas"],
            "per_workshop": _fmt(m["ideas_per_workshop"], 1),
            "cross_side": f"{100 * m['cross_side_share']:.0f}%",
            "transferred": f"{100 * m['transferred_share']:.0f}%",
            "adopted": f"{100 * m['adopted_share']:.0f}%",
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
            "n": pub.count("invariance", (r.get("construct"), "n"), n), "waves": r.get("waves"),
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


def _stored_fit(res: dict[str, Any]) -> Any:
    """A stored result as a fit of the results protocol (nothing is refitted)."""
    try:
        return result_from_dict(res["fit"])
    except ModelError as exc:
        name = res.get("spec", {}).get("name", "?")
        raise ReportError(f"stored result of model '{name}': {exc}") from None


def _tidy_row(model: str, row: dict[str, Any], label: str, warn: bool) -> dict[str, Any]:
    estimable = bool(row.get("estimable", True))
    return {
        "model": model, "term": row["term"],
        "estimate": _fmt(row["estimate"]) if estimable else "not estimable",
        "ci": f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]" if estimable
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
                 pub: Publication) -> list[dict[str, Any]]:
    """Every fit's effect terms (role "effect" in the protocol's tidy table) and contrasts;
    each describes the smaller of the groups it compares (per wave for a wave's effect)."""
    rows = []
    for name, res in results.items():
        spec = res["spec"]
        fit = _stored_fit(res)
        label, warn = spec.get("label", ""), bool(fit.warnings)
        overall, per_wave = _group_sizes(scores, spec.get("outcome", ""))
        tab = fit.tidy()
        terms = [*tab[tab["role"] == "effect"].to_dict("records"), *res.get("contrasts", [])]
        for row in terms:
            wave = re.search(r"wave(\d+)$", str(row["term"]))
            n = per_wave.get(int(wave.group(1)), 0) if wave else overall
            shown = _tidy_row(name, row, label, warn)

            def st(field: str, n: int = n, term: str = str(row["term"]),
                   text: Any = "", name: str = name) -> Shown:
                return pub.stat("effects", (name, term, field), n, text)

            for field in ("estimate", "ci", "p"):
                shown[field] = st(field, text=shown[field])
            # degrees of freedom can be a count in disguise (t with G - 1 df for participant-
            # clustered errors): hidden whenever the model's participant count is
            shown["df"] = pub.stat("effects", (name, str(row["term"]), "df"), n, shown["df"],
                                   depends=[("model_n", (name, "participants"))]
                                   if fit.record.n_groups.get("participant") is not None
                                   else [])
            rows.append(shown)
    return rows


def _methods(study: _View, results: dict[str, dict[str, Any]], n_people: int, n_obs: int,
             scores: pd.DataFrame, pub: Publication, ctx: _Ctx) -> list[Any]:
    out: list[Any] = []
    cfg = study.config
    k = pub.k
    people = pub.count("analysed", ("participants",), n_people)
    obs = pub.count("analysed", ("participant_waves",), n_obs)
    pub.tables.total(obs.id, list(ctx.total.values()), exact=False,
                     name="participant-waves = sum of respondents over waves")
    news = [c.id for (_, col), c in ctx.linkage.items() if col == "new"]
    if news:
        pub.tables.total(people.id, news, exact=False,
                         name="participants = sum of new records over waves")
    too_few = scores[scores["status"] == "too_few_items"].groupby("construct").size()
    missing_cells = {c: pub.count("scores_missing", (c,), int(n)) for c, n in too_few.items()}
    out.append(Lazy(lambda: (
        f"Responses from {len(cfg.waves)} waves were scored per construct as keyed item means "
        "on the POMP scale (0-100; behavioural measures in their own units); a score is missing "
        "when fewer than the construct's minimum share of items was answered (participant-waves "
        "without a score for that reason: "
        f"{'; '.join(f'{c}: {cell}' for c, cell in missing_cells.items()) or 'none'}). Test "
        "and unfinished responses were excluded.")))
    for name, res in results.items():
        fit = _stored_fit(res)
        rec = fit.record
        outcome = res["spec"].get("outcome", "")
        n_model = int(rec.n_obs)
        groups = rec.n_groups.get("participant")
        nobs = pub.count("model_n", (name, "observations"), n_model)
        ngroups = None if groups is None else pub.count("model_n", (name, "participants"),
                                                         int(groups))
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
        sentence = html.escape(f"{name}: {fit.describe()}")
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
    """Everything the impact report prints, registered for disclosure control."""

    publication: Publication
    context: dict[str, Any]


def report_tables(store: Store, context: StudyContext, k: int | None = None, *,
                  model_run: RunRecord | None = None) -> ReportTables:
    """Register every number of the impact report (nothing is protected yet).

    Parameters
    ----------
    store : Store
        A study store with scores and model results.
    context : StudyContext
        The study's frozen context.
    k : int, optional
        Minimum cell size; default ``context.config.privacy.min_cell_size``.
    model_run : RunRecord, optional
        The model run whose results are reported; ``None``: whatever results are stored.

    Returns
    -------
    ReportTables
        ``publication.protect()`` decides what is printed; ``context`` is the template context.
    """
    study = _View(store, context.config, context.instrument)
    results = store.results(None if model_run is None else model_run.run_id)
    if not results or not store.has_table("scores"):
        where = "in-memory store" if store.in_memory else str(store.path)
        raise ReportError(f"{where}: no scores or model results yet; run "
                          "`trackii-eval score` and `trackii-eval model` first")
    k = study.config.privacy.min_cell_size if k is None else k
    pub = Publication(k)
    ctx = _Ctx()
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
    page = dict(
        effects=_effect_rows(results, scores, pub), responses=responses,
        attrition=_attrition(scores, study, pub, ctx),
        moderation=_moderation(scores, study, pub, ctx), ideas=_ideas(study, scores, pub),
        network=network, invariance=_invariance_rows(study, pub),
        item_flags=_item_flags(study, pub), linkage=linkage, reliability=reliability_rows,
        files=files, problems=problems,
        methods=_methods(study, results, n_people, n_obs, scores, pub, ctx),
        headline=_headline(results, study, scores, pub), k=k,
    )
    return ReportTables(pub, page)


def render_report(store: Store, ctx: StudyContext, path: str | Path, *,
                  model_run: RunRecord | None = None) -> Path:
    """Render the self-contained HTML impact report to ``path``.

    Reads scores, reliability, ingest provenance and stored model results; fits nothing. Every
    printed number passes :func:`trackii_eval.disclosure.protect` first (all tables together).
    Use the report stage (:func:`trackii_eval.pipeline.stages.report`), which first checks that
    the results are current and writes the manifest.

    Parameters
    ----------
    store, ctx
        The study store and its frozen context.
    path
        The HTML file to write.
    model_run
        The model run whose results are reported (only its results are read; the report names
        its plan and hash). ``None``: whatever results are stored.

    Raises
    ------
    ReportError
        No scores or model results yet.
    DisclosureError
        ``privacy.min_cell_size`` is below 5, or the tables cannot be protected.
    """
    study = _View(store, ctx.config, ctx.instrument)
    tables = report_tables(store, ctx, model_run=model_run)
    pub = tables.publication
    pub.protect()
    k = pub.k
    scores = store.query("SELECT * FROM scores")
    results = store.results(None if model_run is None else model_run.run_id)
    program_end = study.config.program_end_time
    base_date = study.config.waves[0].date
    events = [((e.date - base_date).days / 365.25, e.label) for e in study.config.context_events]
    figures = []
    for construct, con in study.instrument.constructs.items():
        if con.asked_of is not None or con.waves is not None:
            continue  # not a panel outcome of both arms
        predicted = None
        model_name = None
        for name, res in results.items():
            if res["spec"]["outcome"] == construct and res.get("trajectory"):
                if model_name is None or res["spec"].get("headline") or "durability" in name:
                    predicted, model_name = pd.DataFrame(res["trajectory"]), name
        # means of groups of at least k people only (a mean does not reveal its group's size)
        observed = _observed_means(scores, construct, k)
        figures.append({
            "title": con.label or construct,
            "png": trajectory_figure(
                observed, predicted, title=f"{con.label or construct} by arm",
                ylabel=f"{construct} ({'POMP 0-100' if con.scoring == 'pomp' else 'own units'})",
                program_end=program_end, events=events,
            ),
            "model": model_name,
        })
    warnings_list = [
        f"{name}: {w}" for name, res in results.items() for w in _stored_fit(res).warnings
    ]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trackii_eval", "report/templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    html_text = env.get_template("report.html").render(
        study=study.config, generated=dt.date.today().isoformat(), version=__version__,
        config_hash=ctx.config_hash[:12], figures=figures, warnings=warnings_list,
        plan=None if model_run is None else {
            "name": model_run.inputs.get("plan_name"),
            "hash": str(model_run.inputs.get("plan_hash"))[:12], "models": list(results),
            "run_id": model_run.run_id, "score_run": model_run.inputs.get("score_run"),
        },
        marker=pub.result.marker if pub.result else "x", **tables.context,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_text, encoding="utf-8")
    return path


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
            "flag": bool(r.get("flag", False)),
        })
    return rows


def _headline(results: dict[str, dict[str, Any]], study: _View, scores: pd.DataFrame,
              pub: Publication) -> dict[str, Any] | None:
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

        def st(field: Any, text: str, n: int = n, name: str = name) -> Shown:
            return pub.stat("headline", (name, field), n, text)

        return {
            "model": name, "outcome": res["spec"]["outcome"],
            "label": res["spec"].get("label", ""),
            "rows": [{
                "label": r["term"],
                "estimate": st((r["term"], "estimate"), _fmt(r["estimate"], 1))
                if r.get("estimable", True) else "not estimable",
                "ci": st((r["term"], "ci"), f"[{_fmt(r['ci_low'], 1)}, {_fmt(r['ci_high'], 1)}]"),
                "p": st((r["term"], "p"), _p_phrase(r["p_value"])),
            } for r in rows],
            "converged": fit.record.converged,
        }
    return None
