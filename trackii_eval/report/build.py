"""Build the impact report from stored scores and results; nothing is refitted here.

Disclosure control: every count below the study's ``min_cell_size`` is shown as ``<k`` and every
mean over fewer people is suppressed; no pseudonym, raw ID or identifier column is read.
"""

from __future__ import annotations

import datetime as dt
import html
import math
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
from .figures import trajectory_figure

if TYPE_CHECKING:
    from ..config import Instrument, StudyConfig
    from ..pipeline.context import StudyContext
    from ..pipeline.provenance import RunRecord
    from ..store import Store

__all__ = ["render_report", "suppress_count"]


@dataclass(frozen=True)
class _View:
    """What the report's sections read: the store and the study's configuration."""

    store: Store
    config: StudyConfig
    instrument: Instrument


def suppress_count(n: int | float, k: int) -> str:
    """A count as published: the number, or ``<k`` when it is a small cell (but not zero)."""
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


def _observed_means(scores: pd.DataFrame, construct: str, k: int) -> pd.DataFrame:
    sub = scores[(scores["construct"] == construct) & scores["score"].notna()]
    g = sub.groupby(["arm", "wave", "time"])["score"]
    out = g.agg(["mean", "std", "count"]).reset_index()
    out = out[out["count"] >= k]  # small cells are not published
    half = stats.t.ppf(0.975, np.maximum(out["count"] - 1, 1)) * out["std"] / np.sqrt(out["count"])
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out


def _response_table(study: _View, k: int) -> list[dict[str, Any]]:
    store = study.store
    df = store.query("""
        SELECT s.wave, p.arm, count(DISTINCT s.participant) AS n
        FROM submissions s JOIN files f ON f.sha256 = s.sha256 AND f.active
        JOIN participants p USING (participant)
        WHERE s.excluded_reason IS NULL GROUP BY 1, 2 ORDER BY 1, 2
    """)
    base = df[df["wave"] == df["wave"].min()].set_index("arm")["n"]
    rows = []
    labels = {w.index: w.label for w in study.config.waves}
    for (wave, arm), n in df.set_index(["wave", "arm"])["n"].items():
        retained = n / base.get(arm, np.nan)
        rows.append({
            "wave": wave, "label": labels.get(wave, ""), "arm": arm,
            "n": suppress_count(n, k),
            "retained": "–" if n < k else f"{100 * retained:.0f}%",
        })
    return rows


def _attrition(scores: pd.DataFrame, study: _View, k: int) -> dict[str, Any] | None:
    """Baseline perceptions of those who answered the last wave vs those who did not."""
    construct = "perceptions" if "perceptions" in set(scores["construct"]) else None
    if construct is None:
        return None
    first, last = study.config.waves[0].index, study.config.waves[-1].index
    sub = scores[scores["construct"] == construct]
    base = sub[sub["wave"] == first].set_index("participant")["score"].dropna()
    stayed = set(sub.loc[(sub["wave"] == last) & sub["score"].notna(), "participant"])
    s = base[base.index.isin(stayed)]
    left = base[~base.index.isin(stayed)]
    if len(s) < k or len(left) < k:
        return None
    t = stats.ttest_ind(s, left, equal_var=False)
    return {
        "construct": construct, "n_stayed": suppress_count(len(s), k),
        "n_left": suppress_count(len(left), k), "mean_stayed": _fmt(s.mean(), 1),
        "mean_left": _fmt(left.mean(), 1), "diff": _fmt(s.mean() - left.mean(), 1),
        "p": _p(float(t.pvalue)), "last_wave": last,
    }


def _moderation(scores: pd.DataFrame, study: _View, k: int) -> list[dict[str, Any]]:
    sub = scores[(scores["output"] == "moderation") & scores["score"].notna()]
    rows = []
    for d in study.config.dialogues:
        vals = sub.loc[sub["dialogue"] == d.id, "score"]
        native = sum(m.native_language for m in d.moderators)
        team = ", ".join(
            f"{m.type}{' (native language)' if m.native_language else ''}" for m in d.moderators
        ) + f" — {native} of {len(d.moderators)} native speakers"
        if len(vals) < k:
            rows.append({"dialogue": d.id, "name": d.name, "n": suppress_count(len(vals), k),
                         "mean": "suppressed", "ci": "", "team": team})
            continue
        half = stats.t.ppf(0.975, len(vals) - 1) * vals.std() / math.sqrt(len(vals))
        rows.append({"dialogue": d.id, "name": d.name, "n": str(len(vals)),
                     "mean": _fmt(vals.mean(), 1),
                     "ci": f"[{vals.mean() - half:.1f}, {vals.mean() + half:.1f}]", "team": team})
    return rows


def _ideas(study: _View, scores: pd.DataFrame, k: int) -> list[dict[str, Any]]:
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
            "self_rating": _fmt(own.mean(), 1) if len(own) >= k else "suppressed",
        })
    return rows


def _linkage_rows(study: _View, k: int) -> list[dict[str, Any]]:
    """Linkage counts per wave, small cells suppressed (they count people)."""
    if not study.store.has_table("linkage"):
        return []
    rows = []
    for r in study.store.query("SELECT * FROM linkage ORDER BY wave").to_dict(orient="records"):
        rows.append({
            "wave": r["wave"], "match_rate": r["match_rate"],
            **{c: suppress_count(r[c], k) for c in
               ("records", "exact", "fuzzy", "decision", "new", "ambiguous")},
        })
    return rows


def _item_flags(study: _View, k: int) -> list[dict[str, Any]]:
    """Items a reviewer would ask about: weak item-rest correlation, floor or ceiling effects."""
    if not study.store.has_table("item_statistics"):
        return []
    items = study.store.query("SELECT * FROM item_statistics")
    if items.empty:
        return []
    items = items[items["n"] >= k]
    weak = (items["r_drop"] < 0.3) | (items["floor_share"] > 0.15) | (
        items["ceiling_share"] > 0.15)
    rows = []
    for r in items[weak].sort_values(["construct", "item", "wave"]).to_dict(orient="records"):
        rows.append({
            "construct": r["construct"], "item": r["item"], "wave": r["wave"],
            "r_drop": _fmt(r["r_drop"]), "alpha_if_deleted": _fmt(r["alpha_if_deleted"]),
            "floor": f"{100 * r['floor_share']:.0f}%",
            "ceiling": f"{100 * r['ceiling_share']:.0f}%",
        })
    return rows


def _invariance_rows(study: _View) -> list[dict[str, Any]]:
    if not study.store.has_table("invariance"):
        return []
    inv = study.store.query("SELECT * FROM invariance")
    rows = []
    for r in inv.to_dict(orient="records"):
        rows.append({
            "construct": r.get("construct"), "model": r.get("model"),
            "chisq": _fmt(r.get("chisq")), "df": r.get("df"), "cfi": _fmt(r.get("cfi"), 3),
            "rmsea": _fmt(r.get("rmsea"), 3), "srmr": _fmt(r.get("srmr"), 3),
            "delta_cfi": _fmt(r.get("delta_cfi"), 3), "decision": r.get("decision"),
            "n": r.get("n"), "waves": r.get("waves"),
        })
    return rows


def _network_rows(study: _View, k: int) -> list[dict[str, Any]]:
    if not study.store.has_table("network"):
        return []
    net = study.store.query("SELECT * FROM network ORDER BY dialogue, wave")
    rows = []
    for r in net.to_dict(orient="records"):
        small = r["n_participants"] < k
        rows.append({
            "dialogue": r["dialogue"], "wave": r["wave"],
            "n": suppress_count(r["n_participants"], k),
            "density": "–" if small else _fmt(r["cross_density"], 3),
            "reciprocity": "–" if small else _fmt(r["cross_reciprocity"], 2),
            "working": "–" if small else suppress_count(r["working_ties"], k),
            "persisting": "–" if small or not math.isfinite(r["persisting"])
            else f"{100 * r['persisting']:.0f}%",
        })
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


def _effect_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every fit's effect terms (role "effect" in the protocol's tidy table) and contrasts."""
    rows = []
    for name, res in results.items():
        fit = _stored_fit(res)
        label, warn = res["spec"].get("label", ""), bool(fit.warnings)
        tab = fit.tidy()
        for row in tab[tab["role"] == "effect"].to_dict("records"):
            rows.append(_tidy_row(name, row, label, warn))
        for row in res.get("contrasts", []):
            rows.append(_tidy_row(name, row, label, warn))
    return rows


def _methods(study: _View, results: dict[str, dict[str, Any]], n_people: int, n_obs: int,
             scores: pd.DataFrame) -> list[str]:
    out = []
    cfg = study.config
    k = cfg.privacy.min_cell_size
    too_few = scores[scores["status"] == "too_few_items"].groupby("construct").size()
    missing = "; ".join(f"{c}: {suppress_count(n, k)}" for c, n in too_few.items()) or "none"
    out.append(
        f"Responses from {len(cfg.waves)} waves were scored per construct as keyed item means "
        "on the POMP scale (0-100; behavioural measures in their own units); a score is missing "
        "when fewer than the construct's minimum share of items was answered (participant-waves "
        f"without a score for that reason: {missing}). Test and unfinished responses were "
        "excluded."
    )
    for name, res in results.items():
        out.append(html.escape(f"{name}: {_stored_fit(res).describe()}"))
    out.append(
        "Reliability per construct and wave: Cronbach's alpha with the Feldt interval "
        "(pairwise-complete covariances, as psych::alpha) and McDonald's omega total from a "
        "one-factor maximum-likelihood model with a 200-resample percentile bootstrap interval."
    )
    out.append(
        f"Disclosure control: counts below {cfg.privacy.min_cell_size} are shown as "
        f"&lt;{cfg.privacy.min_cell_size} and means over fewer people are suppressed. "
        f"{n_people} participants and {n_obs} participant-waves were analysed."
    )
    return out


def render_report(store: Store, ctx: StudyContext, path: str | Path, *,
                  model_run: RunRecord | None = None) -> Path:
    """Render the self-contained HTML impact report to ``path``.

    Reads scores, reliability, ingest provenance and stored model results; fits nothing.
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
        No scores or model results.
    """
    study = _View(store, ctx.config, ctx.instrument)
    results = store.results(None if model_run is None else model_run.run_id)
    if not results or not store.has_table("scores"):
        where = "in-memory store" if store.in_memory else str(store.path)
        raise ReportError(f"{where}: no scores or model results yet; run "
                          "`trackii-eval score` and `trackii-eval model` first")
    k = study.config.privacy.min_cell_size
    scores = store.query("SELECT * FROM scores")
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
    headline = _headline(results, study)
    files = store.file_summary()
    problems = store.query("""
        SELECT q.rule, q.scope, count(*) AS n FROM quarantine q
        JOIN files f ON f.sha256 = q.sha256 AND f.active GROUP BY 1, 2 ORDER BY 3 DESC
    """)
    reliability = store.query("SELECT * FROM reliability") if store.has_table(
        "reliability") else pd.DataFrame()
    warnings_list = [
        f"{name}: {w}" for name, res in results.items() for w in _stored_fit(res).warnings
    ]
    n_people = scores["participant"].nunique()
    n_obs = scores[["participant", "wave"]].drop_duplicates().shape[0]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trackii_eval", "report/templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    html_text = env.get_template("report.html").render(
        study=study.config, generated=dt.date.today().isoformat(), version=__version__,
        config_hash=ctx.config_hash[:12], headline=headline, figures=figures,
        plan=None if model_run is None else {
            "name": model_run.inputs.get("plan_name"),
            "hash": str(model_run.inputs.get("plan_hash"))[:12], "models": list(results),
            "run_id": model_run.run_id, "score_run": model_run.inputs.get("score_run"),
        },
        effects=_effect_rows(results), responses=_response_table(study, k),
        attrition=_attrition(scores, study, k), moderation=_moderation(scores, study, k),
        ideas=_ideas(study, scores, k), network=_network_rows(study, k),
        invariance=_invariance_rows(study), item_flags=_item_flags(study, k),
        linkage=_linkage_rows(study, k),
        reliability=_reliability_rows(reliability, k),
        files=files.to_dict(orient="records"),
        problems=[{**p, "n": suppress_count(p["n"], k)}
                  for p in problems.to_dict(orient="records")],
        methods=_methods(study, results, n_people, n_obs, scores), warnings=warnings_list, k=k,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_text, encoding="utf-8")
    return path


def _reliability_rows(rel: pd.DataFrame, k: int) -> list[dict[str, Any]]:
    rows = []
    for r in rel.to_dict(orient="records"):
        n = int(r.get("n", 0))
        small = n < k
        rows.append({
            "construct": r.get("construct"), "wave": r.get("wave"), "n": suppress_count(n, k),
            "k": r.get("k"),
            "alpha": "–" if small else _fmt(r.get("alpha")),
            "alpha_ci": "" if small else
            f"[{_fmt(r.get('alpha_ci_low'))}, {_fmt(r.get('alpha_ci_high'))}]",
            "omega": "–" if small else _fmt(r.get("omega_total")),
            "flag": bool(r.get("flag", False)),
        })
    return rows


def _headline(results: dict[str, dict[str, Any]], study: _View) -> dict[str, Any] | None:
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
        return {
            "model": name, "outcome": res["spec"]["outcome"],
            "label": res["spec"].get("label", ""),
            "rows": [{
                "label": r["term"],
                "estimate": _fmt(r["estimate"], 1) if r.get("estimable", True)
                else "not estimable",
                "ci": f"[{_fmt(r['ci_low'], 1)}, {_fmt(r['ci_high'], 1)}]",
                "p": _p(r["p_value"]),
            } for r in rows],
            "converged": fit.record.converged,
        }
    return None
