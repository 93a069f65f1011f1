"""The report's sections that read the stored "change that matters" analyses, and its findings.

The model stage stores, beside fitted models, plan entries whose payload is
``{"spec": ..., "tables": {table: [record, ...]}, "notes": [...]}`` (kinds ``durability``,
``reliable_change``, ``effect_sizes``, ``subgroups``, ``balance``, ``attrition``,
``growth_comparison``; see the shared contract in the design notes). This module registers
every number of those tables with the report's :class:`~.disclose.Publication` and lays them
out as :class:`~.tables.Table` objects; it computes no estimate itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from .disclose import PARTICIPANTS, Lazy, Publication, Shown, respondents
from .labels import Labels
from .tables import Table

__all__ = ["ANALYSIS_KINDS", "Analyses", "num", "pct"]

ANALYSIS_KINDS = ("durability", "reliable_change", "effect_sizes", "subgroups", "balance",
                  "attrition", "growth_comparison")


def num(x: Any, digits: int = 1, factor: float = 1.0) -> str:
    """A number as printed ("–" when missing)."""
    if x is None:
        return "–"
    try:
        v = float(x) * factor
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    text = f"{v:.{digits}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text.replace(
        "-", "−")


def pct(x: Any, digits: int = 0) -> str:
    """A share (0-1) as a percentage ("–" when missing)."""
    text = num(x, digits, 100.0)
    return text if text == "–" else f"{text}%"


def _p(p: Any) -> str:
    try:
        v = float(p)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _n(*values: Any) -> int:
    """The people a statistic describes: the smallest of the groups it compares."""
    out = []
    for v in values:
        try:
            if v is not None and math.isfinite(float(v)):
                out.append(int(v))
        except (TypeError, ValueError):
            continue
    return min(out) if out else 0


class Analyses:
    """The stored analyses of one model run, registered for disclosure control.

    Parameters
    ----------
    results
        Every stored payload of the run (by name); only the kinds in :data:`ANALYSIS_KINDS`
        are read.
    labels
        The study's labels.
    pub
        The publication every number is registered with.
    """

    def __init__(self, results: dict[str, dict[str, Any]], labels: Labels,
                 pub: Publication) -> None:
        self.labels = labels
        self.pub = pub
        self.by_kind: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for name, res in results.items():
            kind = res.get("kind") or res.get("spec", {}).get("kind")
            if kind in ANALYSIS_KINDS:
                self.by_kind.setdefault(kind, []).append((name, res))

    # -- access ----------------------------------------------------------------------------
    def frames(self, kind: str, table: str,
               outcome: str | None = None) -> list[tuple[str, dict[str, Any], pd.DataFrame]]:
        """(name, spec, table) of every stored analysis of ``kind`` (for ``outcome``)."""
        out = []
        for name, res in self.by_kind.get(kind, []):
            spec = res.get("spec", {})
            if outcome is not None and spec.get("outcome") != outcome:
                continue
            rows = res.get("tables", {}).get(table)
            if rows:
                out.append((name, spec, pd.DataFrame(rows)))
        return out

    def notes(self, name: str) -> str:
        """The analysis' own notes (what was computed), as one escaped sentence."""
        import html

        for items in self.by_kind.values():
            for n, res in items:
                if n == name:
                    return html.escape("; ".join(res.get("notes") or []))
        return ""

    def title(self, name: str, spec: dict[str, Any], default: str) -> str:
        """An analysis' title: its plan label, else ``default``."""
        return spec.get("label") or default

    # -- durability ------------------------------------------------------------------------
    def durability(self, outcome: str) -> list[Table]:
        """The gap at every wave after baseline and the share of the end-of-programme gain
        that remains at each follow-up."""
        lab, pub = self.labels, self.pub
        treated, comparison = str(lab.treated), lab.config.comparison_arm
        unit = lab.unit(outcome)
        out = []
        for name, spec, gaps in self.frames("durability", "gaps", outcome):
            rows = []
            for r in gaps.to_dict("records"):
                w = int(r["wave"])
                n = _n(r.get("n_treated"), r.get("n_comparison"))

                def st(field: str, text: str, n: int = n, w: int = w,
                       name: str = name) -> Shown:
                    return pub.stat("durability", (name, w, field), n, text)

                rows.append([
                    lab.wave(w),
                    st("estimate", num(r["estimate"], unit.digits, unit.factor)),
                    st("ci", f"[{num(r['ci_low'], unit.digits, unit.factor)}, "
                       f"{num(r['ci_high'], unit.digits, unit.factor)}]"),
                    pub.count("durability_n", (name, w, "treated"), int(r["n_treated"]),
                              quantity=respondents(w, treated)),
                    pub.count("durability_n", (name, w, "comparison"), int(r["n_comparison"]),
                              quantity=None if comparison is None
                              else respondents(w, comparison)),
                ])
            out.append(Table(
                f"gaps-{name}", self.title(name, spec, f"{lab.construct(outcome)}: gap between "
                                           "dialogue participants and the comparison group"),
                ["Wave", f"Gap ({unit.effect})", "95% CI", f"N {lab.arm(lab.treated).lower()}",
                 f"N {lab.arm(lab.comparison).lower()}"], rows,
                note="Dialogue minus comparison at each wave after baseline. "
                     + (self.notes(name)[:1].upper() + self.notes(name)[1:] + "."
                        if self.notes(name) else "")))
        for name, _spec, per in self.frames("durability", "persistence", outcome):
            rows = []
            for r in per.to_dict("records"):
                w = int(r["wave"])
                n = _n(r.get("n_treated"), r.get("n_comparison"))
                rows.append([
                    lab.wave(w),
                    pub.stat("persistence", (name, w, "estimate"), n, pct(r["estimate"])),
                    pub.stat("persistence", (name, w, "ci"), n,
                             f"[{pct(r['ci_low'])}, {pct(r['ci_high'])}]"),
                ])
            out.append(Table(
                f"persistence-{name}", f"{lab.construct(outcome)}: share of the "
                "end-of-programme gain that remains", ["Follow-up", "Share remaining",
                                                       "95% CI"], rows,
                note="100% means the whole gap measured at the end of the programme is still "
                     "there; 0% means it has gone."))
        return out

    # -- reliable change -------------------------------------------------------------------
    def reliable_change(self, outcome: str | None = None, *,
                        only: Callable[[dict[str, Any]], bool] | None = None) -> list[Table]:
        """Shares of people who reliably improved, did not change, or worsened."""
        lab, pub = self.labels, self.pub
        out = []
        for name, spec, sh in self.frames("reliable_change", "shares", outcome):
            rows, groups = [], {}
            last = None
            for r in sh.to_dict("records"):
                if only is not None and not only(r):
                    continue
                by, g, w = str(r["by"]), str(r["group"]), int(r["wave"])
                arm = str(r.get("arm") or "")
                key = (name, by, g, w) if by in ("arm", "dialogue") else (name, by, g, arm, w)
                n = pub.count("reliable_change", (*key, "n"), int(r["n"]))
                parts = {c: pub.count("reliable_change", (*key, c), int(r[f"n_{c}"]))
                         for c in ("improved", "unchanged", "worsened")}
                pub.tables.total(n.id, [p.id for p in parts.values()], exact=False,
                                 name=f"{name} {by} {g} wave {w}: n = improved + unchanged + "
                                 "worsened")
                heading = {"arm": "By arm", "dialogue": "By dialogue",
                           "side": "By side"}.get(by, f"By {by}")
                if heading != last:
                    groups[len(rows)] = heading
                    last = heading
                gl = lab.arm(g) if by == "arm" else lab.dialogue(g) if by == "dialogue" else (
                    f"{g} — {lab.arm(arm)}" if arm else g)
                rows.append([gl, lab.wave(w, short=True), n, *[
                    pub.share("reliable_change_share", (*key, c), int(r[f"n_{c}"]), int(r["n"]),
                              pct(r[f"n_{c}"] / r["n"] if r["n"] else None),
                              depends=[n.id, parts[c].id])
                    for c in ("improved", "unchanged", "worsened")]])
            self._relate_reliable(name, sh)
            if rows:
                cut = sh["rci_cutoff"].dropna()
                out.append(Table(
                    f"reliable-change-{name}", self.title(
                        name, spec, f"{lab.construct(spec.get('outcome', ''))}: who changed "
                        "reliably since baseline"),
                    ["Group", "Wave", "N", "Reliably improved", "No reliable change",
                     "Reliably worsened"], rows, labels=(0, 1), groups=groups,
                    note="Reliable change index (Jacobson &amp; Truax 1991): a change from "
                         "baseline larger than measurement error alone would produce 95% of the "
                         "time" + (f" (|RCI| &gt; {cut.iloc[0]:.2f})" if len(cut) else "") +
                         ", using each wave's reliability."))
        return out

    def _relate_reliable(self, name: str, sh: pd.DataFrame) -> None:
        """Dialogues add up to the dialogue arm (an attacker's margin between the tables)."""
        tables = self.pub.tables
        treated = str(self.labels.treated)
        arms = [str(a.id) for a in self.labels.config.arms]
        for w in sh["wave"].unique():
            at = sh[sh["wave"] == w]
            for c in ("n", "improved", "unchanged", "worsened"):
                total = ("reliable_change", (name, "arm", treated, int(w), c))
                parts = [("reliable_change", (name, "dialogue", str(g), int(w), c))
                         for g in at.loc[at["by"] == "dialogue", "group"]]
                if total in tables.cells and parts and all(p in tables.cells for p in parts):
                    tables.total(total, parts, exact=False,
                                 name=f"{name} wave {w} {c}: dialogues = dialogue arm")
                for arm in arms:  # the sides of an arm add up to the arm
                    total = ("reliable_change", (name, "arm", arm, int(w), c))
                    parts = [("reliable_change", (name, "side", str(g), arm, int(w), c))
                             for g in at.loc[(at["by"] == "side") & (at["arm"] == arm), "group"]]
                    if total in tables.cells and parts and all(p in tables.cells for p in parts):
                        tables.total(total, parts, exact=False,
                                     name=f"{name} wave {w} {c}: sides = {arm} arm")

    # -- effect sizes ----------------------------------------------------------------------
    def effect_sizes(self, outcome: str) -> tuple[list[Table], dict[tuple[str, Any], Shown]]:
        """Standardized effect sizes, and a lookup (measure, wave) -> printed "g [lo, hi]"."""
        lab, pub = self.labels, self.pub
        names = {"hedges_g": "Hedges' g: difference between the arms at each wave",
                 "d_z": "d_z: change since baseline within each arm",
                 "growth_d": "Growth-model d: yearly gap during the programme (Feingold 2009)"}
        out, lookup = [], {}
        for name, spec, eff in self.frames("effect_sizes", "effects", outcome):
            rows, groups, last = [], {}, None
            for r in eff.to_dict("records"):
                m = str(r["measure"])
                w = r.get("wave")
                w = None if w is None or (isinstance(w, float) and math.isnan(w)) else int(w)
                g = str(r.get("group") or "")
                n = int(r.get("n") or 0)
                key = (name, m, w, g)
                # a difference between two groups describes the smaller of them
                small = _n(*(x for x in (r.get("n_treated"), r.get("n_comparison"))
                             if x not in (None, 0))) or n
                cell = pub.stat("effect_sizes", key, small,
                                f"{num(r['estimate'], 2)} [{num(r['ci_low'], 2)}, "
                                f"{num(r['ci_high'], 2)}]")
                if m != last:
                    groups[len(rows)] = names.get(m, m)
                    last = m
                gl = lab.arm(g) if g in {a.id for a in lab.config.arms} else (
                    lab.dialogue(g) if g in {d.id for d in lab.config.dialogues} else (
                        "Dialogue vs comparison" if " vs " in g else g or "all"))
                rows.append([gl, "whole study" if w is None or m == "growth_d"
                             else lab.wave(w, short=True),
                             cell, pub.count("effect_sizes_n", key, n,
                                             quantity=PARTICIPANTS if w is None else None)])
                if m == "hedges_g":
                    lookup.setdefault((m, w), cell)
                elif m == "growth_d":
                    lookup.setdefault((m, None), cell)
            if rows:
                out.append(Table(
                    f"effect-sizes-{name}", self.title(name, spec, f"{lab.construct(outcome)}: "
                                                       "standardized effect sizes"),
                    ["Group", "Wave", "Effect size (95% CI)", "N"], rows, labels=(0, 1),
                    groups=groups, note="In standard deviations (pooled, at baseline for the "
                    "growth-model d); 0.2, 0.5 and 0.8 are conventionally read as small, medium "
                    "and large (Cohen 1988)."))
        return out, lookup

    # -- subgroups -------------------------------------------------------------------------
    def subgroups(self) -> tuple[list[Table], list[dict[str, Any]]]:
        """Effects by moderator level; also rows for the forest plot (printed values only)."""
        lab, pub = self.labels, self.pub
        out, forest = [], []
        for name, spec, eff in self.frames("subgroups", "effects"):
            outcome = spec.get("outcome", "")
            unit = lab.unit(outcome)
            rows, groups, last = [], {}, None
            for r in eff.to_dict("records"):
                mod, level = str(r["moderator"]), str(r["level"])
                n_all = int(r.get("n") or 0)
                n = _n(r.get("n_treated"), r.get("n_comparison")) or n_all
                key = (name, mod, level)

                def st(field: str, text: str, n: int = n, key: tuple = key) -> Shown:
                    return pub.stat("subgroups", (*key, field), n, text)

                est = st("estimate", num(r["estimate"], unit.digits, unit.factor))
                ci = st("ci", f"[{num(r['ci_low'], unit.digits, unit.factor)}, "
                        f"{num(r['ci_high'], unit.digits, unit.factor)}]")
                if mod != last:
                    groups[len(rows)] = f"By {self._moderator(mod)}"
                    last = mod
                rows.append([self._level(mod, level), est, ci, st("p", _p(r.get("p"))),
                             st("p_holm", _p(r.get("p_holm"))),
                             pub.count("subgroups_n", key, n_all)])
                forest.append({"name": name, "moderator": mod, "level": level,
                               "label": f"{self._moderator(mod)}: {self._level(mod, level)}",
                               "estimate": r["estimate"], "ci_low": r["ci_low"],
                               "ci_high": r["ci_high"], "cell": est, "ci_cell": ci,
                               "factor": unit.factor,
                               "unit": unit.effect, "outcome": outcome, "n": n,
                               "digits": unit.digits,
                               "level_label": self._level(mod, level),
                               "moderator_label": self._moderator(mod),
                               "notes": self.notes(name)})
            if rows:
                out.append(Table(
                    f"subgroups-{name}", self.title(name, spec, f"{lab.construct(outcome)}: "
                                                    "for whom did it work?"),
                    ["Subgroup", f"Effect ({unit.effect})", "95% CI", "p", "p (Holm)", "N"],
                    rows, groups=groups,
                    note="p (Holm): adjusted for testing several subgroups (Holm 1979). A "
                         "subgroup effect is the dialogue-comparison difference among those "
                         "people only" + (f" ({self.notes(name)})." if self.notes(name)
                                          else ".")))
        return out, forest

    def _moderator(self, mod: str) -> str:
        return {"dialogue": "dialogue", "side": "side of the conflict", "arm": "arm"}.get(
            mod, mod.replace("_", " "))

    def _level(self, mod: str, level: str) -> str:
        if mod == "dialogue":
            return self.labels.dialogue(level)
        return level

    # -- balance ---------------------------------------------------------------------------
    def balance(self) -> list[Table]:
        """Baseline means of the arms and their standardized mean difference."""
        lab, pub = self.labels, self.pub
        out = []
        for name, spec, bal in self.frames("balance", "balance"):
            rows = []
            for r in bal.to_dict("records"):
                var = str(r["variable"])
                level = str(r.get("level") or "")
                nt, nc = int(r.get("n_treated") or 0), int(r.get("n_comparison") or 0)
                key = (name, var, level) if level else (name, var)
                unit = lab.unit(var) if var in lab.instrument.constructs else None
                digits = unit.digits if unit else 2
                factor = unit.factor if unit else 1.0
                share = r.get("type") == "binary" or (unit is not None and unit.factor == 100)
                if share:
                    digits, factor = 0, 100.0  # a share, printed in %
                label = str(r.get("label") or (lab.construct(var) if unit else var))
                label = label[:1].upper() + label[1:] + (" (%)" if share else "")
                rows.append([
                    str(label),
                    pub.stat("balance", (*key, "treated"), nt, num(r["mean_treated"], digits,
                                                                   factor)),
                    pub.stat("balance", (*key, "comparison"), nc,
                             num(r["mean_comparison"], digits, factor)),
                    pub.stat("balance", (*key, "smd"), min(nt, nc), num(r["smd"], 2)),
                    "imbalanced" if bool(r.get("flagged")) else "balanced",
                ])
            if rows:
                out.append(Table(
                    f"balance-{name}", self.title(name, spec, "Baseline balance"),
                    ["Baseline characteristic", lab.arm(lab.treated), lab.arm(lab.comparison),
                     "Standardized difference", "Judgement"], rows, labels=(0, 4),
                    note="Standardized mean difference: the difference in means divided by the "
                         "pooled standard deviation; |SMD| above 0.1 is flagged (Austin 2009)."))
        return out

    # -- attrition -------------------------------------------------------------------------
    def attrition(self, ctx_response: dict[tuple[int, str], Shown]) -> list[Table]:
        """Who stayed per wave and arm, and the estimate under three missing-data methods."""
        lab, pub = self.labels, self.pub
        out = []
        for name, _spec, drop in self.frames("attrition", "dropout"):
            rows = []
            for r in drop.to_dict("records"):
                w, arm = int(r["wave"]), str(r["arm"])
                base = pub.count("attrition_n", (name, w, arm, "baseline"), int(r["n_baseline"]))
                obs = pub.count("attrition_n", (name, w, arm, "observed"), int(r["n_observed"]),
                                quantity=respondents(w, arm))
                if (w, arm) in ctx_response:
                    pub.tables.same(obs.id, ctx_response[(w, arm)].id,
                                    name=f"{name}: observed = respondents ({w}, {arm})")
                rows.append([lab.wave(w, short=True), lab.arm(arm), base, obs,
                             pub.share("attrition_share", (name, w, arm), int(r["n_observed"]),
                                       int(r["n_baseline"]),
                                       pct(r["n_observed"] / r["n_baseline"]
                                           if r["n_baseline"] else None),
                                       depends=[base.id, obs.id])])
            if rows:
                out.append(Table(f"dropout-{name}", "Who was still answering at each wave",
                                 ["Wave", "Arm", "Enrolled at baseline", "Observed",
                                  "Retained"], rows, labels=(0, 1)))
        for name, spec, sens in self.frames("attrition", "sensitivity"):
            outcome = spec.get("outcome", "")
            order = [c for c in ("estimand", "method", "wave") if c in sens.columns]
            sens = sens.sort_values(order, kind="stable")
            unit = lab.unit(outcome)
            rows, groups, last = [], {}, None
            for r in sens.to_dict("records"):
                m, w, n = str(r["method"]), int(r["wave"]), int(r.get("n") or 0)
                est = str(r.get("estimand") or "")
                head = m[:1].upper() + m[1:] + (f" ({est})" if est else "")
                if head != last:
                    groups[len(rows)] = head
                    last = head
                key = (name, m, est, w) if est else (name, m, w)
                rows.append([lab.wave(w, short=True),
                             pub.stat("attrition_sensitivity", (*key, "estimate"), n,
                                      num(r["estimate"], unit.digits, unit.factor)),
                             pub.stat("attrition_sensitivity", (*key, "ci"), n,
                                      f"[{num(r['ci_low'], unit.digits, unit.factor)}, "
                                      f"{num(r['ci_high'], unit.digits, unit.factor)}]"),
                             pub.count("attrition_sensitivity_n", key, n)])
            if rows:
                out.append(Table(
                    f"attrition-sensitivity-{name}", self.title(
                        name, spec, f"{lab.construct(outcome)}: the gap under three ways of "
                        "handling drop-out"),
                    ["Wave", f"Gap ({unit.effect})", "95% CI", "N"], rows, groups=groups,
                    note="Complete cases use only people observed at that wave; inverse "
                         "probability weights reweight them by their chance of staying; "
                         "multiple imputation fills in those who left. Similar gaps mean the "
                         "conclusion does not hinge on who dropped out."))
        return out

    # -- model comparison ------------------------------------------------------------------
    def growth_comparison(self, n: int) -> list[Table]:
        """Likelihood-ratio comparison of growth models (ML refits) of ``n`` participants."""
        lab, pub = self.labels, self.pub
        out = []
        for name, spec, comp in self.frames("growth_comparison", "comparison"):
            rows = []
            for r in comp.to_dict("records"):
                m = str(r["model"])
                key = (name, m)
                rows.append([
                    str(r.get("label") or lab.model(m)),
                    pub.stat("growth_comparison", (*key, "n_params"), n, str(r["n_params"])),
                    pub.stat("growth_comparison", (*key, "aic"), n, num(r["aic"], 1)),
                    pub.stat("growth_comparison", (*key, "bic"), n, num(r["bic"], 1)),
                    pub.stat("growth_comparison", (*key, "chisq"), n, num(r.get("chisq"), 2)),
                    pub.stat("growth_comparison", (*key, "df"), n, num(r.get("df"), 0)),
                    pub.stat("growth_comparison", (*key, "p"), n, _p(r.get("p"))),
                ])
            if rows:
                out.append(Table(
                    f"model-comparison-{name}", self.title(name, spec, "Which growth model fits "
                                                           "best?"),
                    ["Model", "Parameters", "AIC", "BIC", "Chi-square", "df", "p"], rows,
                    note="Maximum-likelihood refits of the plan's growth models; lower AIC and "
                         "BIC fit better, and the likelihood-ratio test asks whether the larger "
                         "model's extra terms are needed."))
        return out


def sentence(fn: Callable[[], str]) -> Lazy:
    """A finding: text assembled at render time from protected cells."""
    return Lazy(fn)
