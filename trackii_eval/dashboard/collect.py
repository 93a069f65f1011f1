"""What the portfolio dashboard shows, read from the studies' stores and registered for
disclosure control (nothing is refitted here).

Every number is registered with the one shared :class:`~trackii_eval.report.disclose.Publication`
of the portfolio (each study under its own table prefix, see :mod:`.publication`), in the same
publication as the studies' reports, before anything is rendered:

- respondents per wave, arm, dialogue and side are counts, tied to the report's respondents
  per wave and arm by their margins, so one complementary suppression covers both outputs;
- means of groups are statistics of ``n`` people; the groups shown per study, construct, wave
  and arm are the arm, its dialogues and the dialogues' sides, and only down to the finest of
  these levels at which every group has ``k`` people or more (or none), and the arm's sides
  only when every dialogue-side group has: every published group is then a union of groups of
  ``k`` or more, and no linear combination of published means and counts isolates fewer
  people, so no mean of a small group can be computed from published means;
- reliable-change counts per arm and dialogue are counts with their margin, shares depend on
  them; costs per participant or improver depend on the count they divide by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from scipy import stats

from ..models.results import result_from_dict
from ..report.disclose import Publication, Shown
from .publication import cell_id, prefer_published

if TYPE_CHECKING:
    from ..pipeline.context import StudyContext
    from ..store import Store

__all__ = ["ALL", "StudyView", "collect_study"]

ALL = "all"
"""The value of the dialogue and side fields of a row that covers all of them."""


@dataclass
class StudyView:
    """One study's registered dashboard rows (values are :class:`Shown` until rendered)."""

    study: str
    name: str
    means: list[dict[str, Any]] = field(default_factory=list)
    respondents: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    persistence: list[dict[str, Any]] = field(default_factory=list)
    dialogue_effects: list[dict[str, Any]] = field(default_factory=list)
    improvers: list[dict[str, Any]] = field(default_factory=list)
    ideas: list[dict[str, Any]] = field(default_factory=list)
    network: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    cells: dict[tuple[Any, ...], Shown] = field(default_factory=dict)


def _f(x: Any, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}f}"


def _levels(counts: dict[tuple[str, str], int], k: int) -> tuple[bool, bool]:
    """Whether the dialogue level and the side level may be shown (see module docstring).

    ``counts``: ``(dialogue, side) -> n`` with side ``ALL`` for a dialogue's total.
    """
    dialogues = [n for (d, s), n in counts.items() if s == ALL and d != ALL]
    sides = [n for (d, s), n in counts.items() if s != ALL and d != ALL]
    ok_d = bool(dialogues) and all(n == 0 or n >= k for n in dialogues)
    ok_s = ok_d and bool(sides) and all(n == 0 or n >= k for n in sides)
    return ok_d, ok_s


def _mean_ci(x: pd.Series) -> tuple[float, float, float]:
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std() / math.sqrt(len(x)))
    return m, m - half, m + half


def _means(view: StudyView, scores: pd.DataFrame, ctx: StudyContext, pub: Publication) -> None:
    """Observed means per construct, wave, arm, dialogue and side (groups of k or more)."""
    k = pub.k
    cfg = ctx.config
    treated, comparison = cfg.treated_arm, cfg.comparison_arm
    labels = {w.index: w.label for w in cfg.waves}
    times = cfg.wave_time()
    sub = scores[scores["score"].notna()].copy()
    sub["dialogue"] = sub["dialogue"].astype(object).where(sub["dialogue"].notna(), "(none)")
    sub["side"] = sub["side"].astype(object).where(sub["side"].notna(), "(none)")
    for (construct, wave, arm), g in sub.groupby(["construct", "wave", "arm"], sort=True):
        output = str(g["output"].iloc[0])
        groups: dict[tuple[str, str], pd.Series] = {(ALL, ALL): g["score"]}
        if arm == treated:
            for d, gd in g.groupby("dialogue"):
                groups[(str(d), ALL)] = gd["score"]
                for s, gs in gd.groupby("side"):
                    groups[(str(d), str(s))] = gs["score"]
            sides_of_arm = {str(s): gs["score"] for s, gs in g.groupby("side")}
        else:
            for s, gs in g.groupby("side"):
                groups[(ALL, str(s))] = gs["score"]
        counts = {key: len(v) for key, v in groups.items()}
        ok_d, ok_s = _levels(counts, k)
        if arm == treated:
            # the arm's sides cross its dialogues: shown only when every dialogue-side group
            # has k or more (then every published group is a union of such groups)
            groups.update({(ALL, s): x for s, x in sides_of_arm.items()})
        if arm != treated:  # the comparison arm has sides only
            sides = [n for (d, s), n in counts.items() if s != ALL]
            ok_s = bool(sides) and all(n == 0 or n >= k for n in sides)
        for (d, s), x in groups.items():
            level_ok = (d == ALL and s == ALL) or (s == ALL and ok_d) or (s != ALL and ok_s)
            if not level_ok or len(x) < k:
                continue  # a level not shown, or a group too small (never printed)
            m, lo, hi = _mean_ci(x)
            key = (construct, int(wave), arm, d, s)

            def st(name: str, text: str, key: tuple = key, n: int = len(x)) -> Shown:
                return pub.stat("dash_means", (*key, name), n, text)

            view.means.append({
                "output": output, "construct": construct, "wave": int(wave),
                "wave_label": labels.get(int(wave), str(wave)), "time": times.get(int(wave)),
                "arm": arm, "dialogue": d if arm == treated else (
                    "comparison" if arm == comparison else arm),
                "side": s, "mean": st("mean", _f(m, 2)), "ci_low": st("ci_low", _f(lo, 2)),
                "ci_high": st("ci_high", _f(hi, 2)),
            })


def _respondents(view: StudyView, store: Store, ctx: StudyContext, pub: Publication) -> None:
    """Respondents per wave, arm, dialogue and side; retention since baseline."""
    df = store.query("""
        SELECT s.wave, coalesce(p.arm, '(no arm)') AS arm,
               coalesce(p.dialogue, '(none)') AS dialogue, coalesce(p.side, '(none)') AS side,
               count(DISTINCT s.participant) AS n
        FROM submissions s JOIN files f ON f.sha256 = s.sha256 AND f.active
        JOIN participants p USING (participant)
        WHERE s.excluded_reason IS NULL GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    """)
    if df.empty:
        return
    treated = ctx.config.treated_arm
    first = int(df["wave"].min())
    labels = {w.index: w.label for w in ctx.config.waves}
    for (wave, arm), g in df.groupby(["wave", "arm"]):
        wave = int(wave)
        # the report registers the same count (respondents of the wave and arm): same cell
        top = pub.count("response", (wave, arm), int(g["n"].sum()))
        view.cells[("respondents", wave, arm, ALL, ALL)] = top
        if arm == treated:
            parts = []
            for d, gd in g.groupby("dialogue"):
                cell = pub.count("dash_response", (wave, arm, d, ALL), int(gd["n"].sum()))
                view.cells[("respondents", wave, arm, d, ALL)] = cell
                parts.append(cell.id)
                sides = []
                for s, n in zip(gd["side"], gd["n"], strict=True):
                    c = pub.count("dash_response", (wave, arm, d, s), int(n))
                    view.cells[("respondents", wave, arm, d, s)] = c
                    sides.append(c.id)
                pub.tables.total(cell.id, sides, name=f"wave {wave} {d}: respondents = sides")
            pub.tables.total(top.id, parts, name=f"wave {wave} {arm}: respondents = dialogues")
            for d, cell_d in zip(g.groupby("dialogue").groups, parts, strict=True):
                # the report's page of the dialogue prints its respondents too (counted from
                # scores): the same number where it is, so an attacker would equate them
                twin = cell_id(pub, "response_dialogue", (wave, d))
                if twin in pub.tables.cells:
                    pub.tables.same(cell_d, twin, name=f"wave {wave} {d}: dashboard = report")
        else:
            sides = []
            for s, gs in g.groupby("side"):
                c = pub.count("dash_response", (wave, arm, ALL, s), int(gs["n"].sum()))
                view.cells[("respondents", wave, arm, ALL, s)] = c
                sides.append(c.id)
            pub.tables.total(top.id, sides, name=f"wave {wave} {arm}: respondents = sides")
    for key, cell in view.cells.items():
        if key[0] != "respondents":
            continue
        _, wave, arm, d, s = key
        base = view.cells.get(("respondents", first, arm, d, s))
        retained: Any = None
        if base is not None and wave != first:
            b, n = int(base.text), int(cell.text)
            if 0 < b and n <= b:
                # the share of the baseline group answering the wave (nobody joins later in
                # the demo design; where someone does, n may exceed b and no share is shown)
                retained = pub.share("dash_retained", (wave, arm, d, s), n, b,
                                     f"{100 * n / b:.0f}", depends=[cell.id, base.id])
        view.respondents.append({
            "wave": wave, "wave_label": labels.get(wave, str(wave)), "arm": arm,
            "dialogue": d if arm == treated else "comparison", "side": s, "n": cell,
            "retained_pct": retained,
        })


def _stored_gaps(view: StudyView, results: dict[str, dict[str, Any]], scores: pd.DataFrame,
                 ctx: StudyContext, pub: Publication) -> None:
    """Gaps between the arms at each wave after baseline (stored results only), each row
    saying how its stored analysis computed them (``method``).

    Preferred: the contract's ``durability`` kind (table ``gaps``); otherwise the per-wave
    difference-in-differences of a stored ``event_study``.
    """
    times = ctx.config.wave_time()
    labels = {w.index: w.label for w in ctx.config.waves}
    done: set[str] = set()
    for name, res in results.items():
        spec = res.get("spec", {})
        if spec.get("kind") != "durability":
            continue
        outcome = spec.get("outcome", "")
        # what the stored table is (models/plan_tables.durability_tables): with ``model:`` the
        # growth model's implied gaps, otherwise the model-free difference in mean change
        method = (f"model-implied by the growth model '{spec['model']}'" if spec.get("model")
                  else "difference in mean change from baseline (model-free)")
        for r in (res.get("tables") or {}).get("gaps", []):
            n = int(min(r.get("n_treated") or 0, r.get("n_comparison") or 0))
            w = int(r["wave"])
            key = (name, w)
            view.gaps.append({
                "construct": outcome, "model": name, "source": spec.get("label") or name,
                "method": method,
                "wave": w, "wave_label": labels.get(w, str(w)), "time": times.get(w),
                **{f: pub.stat("dash_gap", (*key, f), n, _f(r.get(f), 2))
                   for f in ("estimate", "ci_low", "ci_high")},
            })
            done.add(outcome)
        for r in (res.get("tables") or {}).get("persistence", []):
            n = int(min(r.get("n_treated") or 0, r.get("n_comparison") or 0))
            w = int(r["wave"])
            view.persistence.append({
                "construct": outcome, "model": name, "wave": w,
                "wave_label": labels.get(w, str(w)),
                **{f: pub.stat("dash_persistence", (name, w, f), n,
                               _f(100 * r[f], 0) if r.get(f) is not None else "–")
                   for f in ("estimate", "ci_low", "ci_high")},
            })
    for name, res in results.items():
        spec = res.get("spec", {})
        outcome = spec.get("outcome", "")
        if spec.get("kind") != "event_study" or outcome in done or "fit" not in res:
            continue
        tab = result_from_dict(res["fit"]).tidy()
        sub = scores[(scores["construct"] == outcome) & scores["score"].notna()]
        per_wave = sub.groupby(["wave", "arm"])["participant"].nunique().groupby("wave").min()
        for r in tab[tab["role"] == "effect"].to_dict("records"):
            digits = "".join(ch for ch in str(r["term"]).rsplit("wave", 1)[-1] if ch.isdigit())
            if not digits or not r.get("estimable", True):
                continue
            w = int(digits)
            n = int(per_wave.get(w, 0))
            key = (name, w)
            view.gaps.append({
                "construct": outcome, "model": name, "source": spec.get("label") or name,
                "method": "difference-in-differences per wave (event-study model)",
                "wave": w, "wave_label": labels.get(w, str(w)), "time": times.get(w),
                "estimate": pub.stat("dash_gap", (*key, "estimate"), n, _f(r["estimate"], 2)),
                "ci_low": pub.stat("dash_gap", (*key, "ci_low"), n, _f(r["ci_low"], 2)),
                "ci_high": pub.stat("dash_gap", (*key, "ci_high"), n, _f(r["ci_high"], 2)),
            })


def dialogue_change_effects(scores: pd.DataFrame, construct: str, ctx: StudyContext
                            ) -> pd.DataFrame:
    """Per-dialogue gap in change from baseline against the comparison arm, at every wave.

    For the participants with a score at baseline and at wave ``w``: mean change in dialogue
    ``d`` minus mean change in the comparison arm (a difference-in-differences of observed
    means), standard error ``sqrt(s_d^2/n_d + s_c^2/n_c)``, Welch interval. Computed from the
    stored scores (nothing is fitted); the dialogues share one comparison arm, so their
    estimates are positively correlated (a meta-analysis across them is then somewhat
    anti-conservative; Knapp-Hartung intervals offset part of it).

    Returns
    -------
    DataFrame
        dialogue, wave, estimate, se, ci_low, ci_high, df, n_dialogue, n_comparison.
    """
    cfg = ctx.config
    first = cfg.waves[0].index
    sub = scores[(scores["construct"] == construct) & scores["score"].notna()]
    base = sub[sub["wave"] == first].set_index("participant")["score"]
    rows = []
    for w, g in sub[sub["wave"] != first].groupby("wave"):
        g = g[g["participant"].isin(base.index)]
        change = g["score"].to_numpy() - base.loc[g["participant"]].to_numpy()
        g = g.assign(change=change)
        comp = g.loc[g["arm"] == cfg.comparison_arm, "change"]
        for d, gd in g[g["arm"] == cfg.treated_arm].groupby("dialogue"):
            x = gd["change"]
            if len(x) < 2 or len(comp) < 2:
                continue
            va, vb = x.var() / len(x), comp.var() / len(comp)
            se = math.sqrt(va + vb)
            df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(comp) - 1))
            est = float(x.mean() - comp.mean())
            half = float(stats.t.ppf(0.975, df)) * se
            rows.append({"dialogue": str(d), "wave": int(w), "estimate": est, "se": se,
                         "ci_low": est - half, "ci_high": est + half, "df": df,
                         "n_dialogue": len(x), "n_comparison": len(comp)})
    return pd.DataFrame(rows, columns=["dialogue", "wave", "estimate", "se", "ci_low",
                                       "ci_high", "df", "n_dialogue", "n_comparison"])


def stored_dialogue_effects(results: dict[str, dict[str, Any]], ctx: StudyContext
                            ) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The stored ``subgroups`` rows by dialogue: ``(construct, dialogue, wave) -> row``.

    These are the numbers the study's report prints on each dialogue's page; the dashboard
    shows the same stored numbers where they exist (one quantity, one interval).
    """
    end = ctx.config.program_end_wave or ctx.config.waves[-1].index
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for res in results.values():
        spec = res.get("spec", {})
        if spec.get("kind") != "subgroups":
            continue
        wave = int(spec["wave"]) if spec.get("wave") is not None else int(end)
        for r in (res.get("tables") or {}).get("effects", []):
            if str(r.get("moderator")) == "dialogue" and r.get("estimable", True):
                out[(str(spec.get("outcome", "")), str(r["level"]), wave)] = r
    return out


def _dialogue_effects(view: StudyView, scores: pd.DataFrame, ctx: StudyContext,
                      pub: Publication, results: dict[str, dict[str, Any]] | None = None
                      ) -> pd.DataFrame:
    """Per-dialogue change gaps of every panel construct, all dialogues of a wave or none.

    Where the study stores a ``subgroups`` analysis by dialogue, its rows (the report's
    numbers) replace the recomputed ones at that wave. Values are printed in the outcome's
    unit as the report prints them (a yes/no share in percentage points).
    """
    from ..report.labels import Labels

    k = pub.k
    times = ctx.config.wave_time()
    labels = Labels(ctx.config, ctx.instrument)
    stored = stored_dialogue_effects(results or {}, ctx)
    published = []
    for construct, con in ctx.instrument.constructs.items():
        if con.asked_of is not None or con.waves is not None:
            continue  # not measured in both arms at every wave
        factor = labels.unit(construct).factor
        eff = dialogue_change_effects(scores, construct, ctx)
        for i, r in eff.iterrows():
            row = stored.get((construct, str(r["dialogue"]), int(r["wave"])))
            if row is not None:
                eff.loc[i, ["estimate", "se", "ci_low", "ci_high", "n_dialogue",
                            "n_comparison"]] = [row["estimate"], row["se"], row["ci_low"],
                                                row["ci_high"], row["n_treated"],
                                                row["n_comparison"]]
        for col in ("estimate", "se", "ci_low", "ci_high"):
            eff[col] = eff[col] * factor
        for w, g in eff.groupby("wave"):
            if (g[["n_dialogue", "n_comparison"]].min(axis=1) < k).any():
                continue  # one small dialogue: its gap would follow from the others' and the arm's
            for r in g.to_dict("records"):
                n = int(min(r["n_dialogue"], r["n_comparison"]))
                key = (construct, r["dialogue"], int(w))
                view.dialogue_effects.append({
                    "construct": construct, "output": con.output, "dialogue": r["dialogue"],
                    "wave": int(w), "time": times.get(int(w)),
                    **{f: pub.stat("dash_dialogue_gap", (*key, f), n, _f(r[f], 2))
                       for f in ("estimate", "se", "ci_low", "ci_high")},
                })
                published.append({**r, "construct": construct})
    return pd.DataFrame(published)


def _improvers(view: StudyView, results: dict[str, dict[str, Any]], ctx: StudyContext,
               pub: Publication) -> pd.DataFrame:
    """Reliable-change counts and shares per arm and dialogue (stored ``reliable_change``)."""
    rows = []
    for name, res in results.items():
        spec = res.get("spec", {})
        if spec.get("kind") != "reliable_change":
            continue
        shares = pd.DataFrame((res.get("tables") or {}).get("shares", []))
        if shares.empty:
            continue
        construct = spec.get("outcome", "")
        shares = shares[shares["by"].isin(["arm", "dialogue"])]
        cells: dict[tuple[str, str, int], tuple[Shown, Shown]] = {}
        for r in shares.to_dict("records"):
            key = (construct, r["by"], str(r["group"]), int(r["wave"]))
            # the report prints these counts under these ids: registering the same cells
            # makes one number with one suppression status in both outputs
            rkey = (name, str(r["by"]), str(r["group"]), int(r["wave"]))
            n = pub.count("reliable_change", (*rkey, "n"), int(r["n"]))
            imp = pub.count("reliable_change", (*rkey, "improved"), int(r["n_improved"]))
            if int(r["wave"]) == (ctx.config.program_end_wave or -1):
                # the costs per improver divide by these: protect neighbours instead if possible
                prefer_published(pub, n.id)
                prefer_published(pub, imp.id)
            cells[(r["by"], str(r["group"]), int(r["wave"]))] = (n, imp)
            share = pub.share("dash_rc_share", key, int(r["n_improved"]), int(r["n"]),
                              _f(100 * r["n_improved"] / r["n"], 0) if r["n"] else "–",
                              depends=[n.id, imp.id])
            view.improvers.append({
                "model": name, "construct": construct, "by": r["by"], "group": str(r["group"]),
                "dialogue": str(r["group"]) if r["by"] == "dialogue" else (
                    ALL if r["group"] == ctx.config.treated_arm else "comparison"),
                "wave": int(r["wave"]), "n": n, "n_improved": imp, "share_pct": share,
            })
            rows.append({**r, "construct": construct, "model": name})
        treated = ctx.config.treated_arm
        for w in {w for (_, _, w) in cells}:
            top = cells.get(("arm", treated, w))
            parts = [v for (by, _, ww), v in cells.items() if by == "dialogue" and ww == w]
            if top is not None and parts:
                for i, what in enumerate(("n", "improved")):
                    pub.tables.total(top[i].id, [p[i].id for p in parts], exact=False,
                                     name=f"{construct} wave {w}: {what} = sum of dialogues")
    return pd.DataFrame(rows)


def _ideas(view: StudyView, store: Store) -> None:
    """Ideas proposed, transferred and adopted per dialogue (counts of ideas, not of people)."""
    if not store.has_table("idea_metrics"):
        return
    for m in store.query("SELECT * FROM idea_metrics ORDER BY dialogue").to_dict("records"):
        n = int(m["n_ideas"])
        for stage, share in (("proposed", 1.0), ("transferred", m["transferred_share"]),
                             ("adopted", m["adopted_share"])):
            view.ideas.append({"dialogue": m["dialogue"], "stage": stage,
                               "ideas": round(float(share) * n)})


def _network(view: StudyView, store: Store, ctx: StudyContext, pub: Publication) -> None:
    """Cross-side network measures per dialogue and wave (the report's cells)."""
    if not store.has_table("network"):
        return
    labels = {w.index: w.label for w in ctx.config.waves}
    for r in store.query("SELECT * FROM network ORDER BY dialogue, wave").to_dict("records"):
        d, w, n = r["dialogue"], int(r["wave"]), int(r["n_participants"])
        view.network.append({
            "dialogue": d, "wave": w, "wave_label": labels.get(w, str(w)),
            "n": pub.count("network", (d, w), n),
            "density": pub.stat("network", (d, w, "density"), n, _f(r["cross_density"], 3)),
            "reciprocity": pub.stat("network", (d, w, "reciprocity"), n,
                                    _f(r["cross_reciprocity"], 2)),
        })


def _evidence(view: StudyView, ctx: StudyContext, results: dict[str, dict[str, Any]]) -> None:
    """Design, n and attrition per dialogue (cells registered by :func:`_respondents`)."""
    cfg = ctx.config
    first, last = cfg.waves[0].index, cfg.waves[-1].index
    design = ("comparison group, panel of " if cfg.comparison_arm else
              "no comparison group, panel of ") + f"{len(cfg.waves)} waves"
    kinds = sorted({r.get("spec", {}).get("kind", "") for r in results.values()})
    for d in [*(x.id for x in cfg.dialogues), "comparison"]:
        arm = cfg.comparison_arm if d == "comparison" else cfg.treated_arm
        group = ALL if d == "comparison" else d  # the comparison arm has no dialogue
        base = view.cells.get(("respondents", first, arm, group, ALL))
        end = view.cells.get(("respondents", last, arm, group, ALL))
        retained = next((r["retained_pct"] for r in view.respondents
                         if r["wave"] == last and r["arm"] == arm and r["dialogue"] == d
                         and r["side"] == ALL), None)
        view.evidence.append({
            "dialogue": d, "design": design, "models": ", ".join(k for k in kinds if k),
            "n_baseline": "–" if base is None else base, "n_last": "–" if end is None else end,
            "retained_pct": retained,
        })


def collect_study(store: Store, ctx: StudyContext, pub: Publication) -> tuple[StudyView,
                                                                                dict[str, Any]]:
    """Register one study's dashboard numbers in its (scoped) publication.

    Parameters
    ----------
    store : Store
        The study store (scores and model results present).
    ctx : StudyContext
        The study's context.
    pub : Publication
        The study's view of the portfolio publication (:func:`.publication.scoped`).

    Returns
    -------
    (StudyView, dict)
        The registered rows, and raw inputs of the portfolio summary: ``effects`` (per-dialogue
        change gaps shown), ``improvers`` (reliable-change counts shown), ``results``.
    """
    view = StudyView(ctx.study_id, ctx.config.name)
    scores = store.query("SELECT * FROM scores")
    results = store.results()
    _respondents(view, store, ctx, pub)
    _means(view, scores, ctx, pub)
    _stored_gaps(view, results, scores, ctx, pub)
    effects = _dialogue_effects(view, scores, ctx, pub, results)
    improvers = _improvers(view, results, ctx, pub)
    _ideas(view, store)
    _network(view, store, ctx, pub)
    _evidence(view, ctx, results)
    return view, {"effects": effects, "improvers": improvers, "results": results}
