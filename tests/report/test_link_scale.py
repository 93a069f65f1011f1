"""Effects of link-scale models (logistic/Poisson GLMM, cumulative-link CLMM) are printed as
odds or rate ratios (or latent probit shifts), never multiplied by the outcome unit's factor
nor labelled as a difference in the outcome's units (regression: the demo report printed the
yes/no GLMM's log odds ratio 1.7087 as "170.87" percentage points)."""

from __future__ import annotations

import html as htmlmod
import math
import re

import numpy as np
import pandas as pd
import pytest

from trackii_eval.errors import ReportError
from trackii_eval.report import build
from trackii_eval.report.disclose import Publication
from trackii_eval.report.labels import Unit
from trackii_eval.report.scale import effect_scale


def _table(page: str, tid: str) -> tuple[list[str], list[list[str]]]:
    """(column heads, data rows) of a printed table, as text."""
    start = page.index(f'id="{tid}"')
    body = page[start: page.index("</table>", start)]
    cell = r"<t([hd])[^>]*>(.*?)</t[hd]>"

    def text(x: str) -> str:
        return htmlmod.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", x))).strip()

    heads, rows = [], []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S):
        cells = re.findall(cell, tr, flags=re.S)
        if cells and all(k == "h" for k, _ in cells) and not heads:
            heads = [text(c) for _, c in cells]
        elif cells and any(k == "d" for k, _ in cells):
            rows.append([text(c) for _, c in cells])
    return heads, rows


def _numbers(cells: list[str]) -> set[float]:
    out = set()
    for c in cells:
        for m in re.findall(r"[−-]?\d+(?:\.\d+)?", c):
            out.add(float(m.replace("−", "-")))
    return out


def test_demo_glmm_rows_are_odds_ratios(demo_run) -> None:
    page = demo_run[3].read_text()
    fit = demo_run[2].fits["joint_activity_glmm"]
    link = fit.tidy().set_index("term")
    ratio = fit.tidy(exponentiate=True).set_index("term")
    heads, rows = _table(page, "effects-joint_activity")
    assert "Odds ratio" in heads
    col, ci_col, p_col = heads.index("Odds ratio"), heads.index("95% CI"), heads.index("p")
    diff_col = next(i for i, h in enumerate(heads) if h.startswith("Difference"))
    effects = link[link["role"] == "effect"]
    assert len(effects) >= 2
    for term, r in effects.iterrows():
        want = f"{ratio.loc[term, 'estimate']:.2f}"
        want_ci = (f"[{ratio.loc[term, 'ci_low']:.2f}, {ratio.loc[term, 'ci_high']:.2f}]")
        hit = [row for row in rows if row[col] == want and row[ci_col] == want_ci]
        assert hit, (term, want, want_ci, rows)
        assert hit[0][diff_col] == ""  # not under "Difference (percentage points)"
        p = r["p_value"]
        assert hit[0][p_col] == ("<0.001" if p < 0.001 else f"{p:.3f}")  # p unchanged
    # no number of the table is 100 x a link-scale coefficient (or its interval's ends)
    printed = _numbers([c for row in rows for c in row[1:]])
    for _, r in effects.iterrows():
        for v in (r["estimate"], r["ci_low"], r["ci_high"]):
            assert round(100 * v, 2) not in printed, v
    # the appendix names the scale and carries the same ratio
    heads, rows = _table(page, "model-terms")
    glmm = [row for row in rows if row[0] == "joint_activity_glmm"]
    assert glmm and {row[heads.index("Scale")] for row in glmm} == {"odds ratio"}
    assert {row[heads.index("Estimate")] for row in glmm} == {
        f"{ratio.loc[t, 'estimate']:.2f}" for t in effects.index}


def test_demo_poisson_glmm_rows_are_rate_ratios(demo_run) -> None:
    page = demo_run[3].read_text()
    ratio = demo_run[2].fits["cross_contacts_glmm"].tidy(exponentiate=True)
    heads, rows = _table(page, "effects-cross_contacts")
    assert "Rate ratio" in heads
    col = heads.index("Rate ratio")
    for r in ratio[ratio["role"] == "effect"].to_dict("records"):
        assert any(row[col] == f"{r['estimate']:.2f}" for row in rows), r


# ------------------------------------------------------------------------- unit level
class _Labels:
    """Only what _effect_rows reads: a yes/no outcome printed x100 in percentage points."""

    def unit(self, outcome: str) -> Unit:
        return Unit(factor=100.0, axis="%", effect="percentage points", level="percent")


def _data(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, waves = 60, 3
    part = np.repeat(np.arange(n), waves)
    time = np.tile(np.arange(waves, dtype=float), n)
    arm = np.where(part < n // 2, "dialogue", "comparison")
    u = rng.normal(0, 0.5, n)[part]
    eta = -0.3 + 0.2 * time + 0.8 * (arm == "dialogue") + u
    y = (rng.random(n * waves) < 1 / (1 + np.exp(-eta))).astype(float)
    ordinal = np.digitize(eta + rng.logistic(size=n * waves), [-0.5, 0.5, 1.5]) + 1
    return pd.DataFrame({"participant": [f"p{i}" for i in part], "time": time, "arm": arm,
                         "y": y, "rating": ordinal, "wave": time.astype(int) + 1})


def _rows(payload: dict, data: pd.DataFrame) -> list[dict]:
    ctx = build._Ctx()
    ctx.labels = _Labels()  # type: ignore[assignment]
    scores = data.assign(construct="y", score=data["y"])
    pub = Publication(k=5)
    rows = build._effect_rows({"m": payload}, scores, pub, ctx)
    pub.protect()
    return rows


@pytest.mark.parametrize("model", ["glmm", "clmm_logit", "clmm_probit"])
def test_stored_link_scale_rows_are_never_scaled_by_the_unit(model: str) -> None:
    from trackii_eval.models.clmm import clmm
    from trackii_eval.models.glmm import glmm

    data = _data()
    if model == "glmm":
        fit = glmm("y ~ time * arm + (1 | participant)", data, family="binomial")
    else:
        fit = clmm("rating ~ time + arm + (1 | participant)", data,
                   link=model.split("_")[1])
    payload = {"spec": {"name": "m", "kind": model.split("_")[0], "outcome": "y"},
               "fit": fit.to_dict()}
    rows = _rows(payload, data)
    tab = fit.tidy()
    eff = tab[tab["role"] == "effect"]
    assert len(rows) == len(eff) >= 1
    probit = model == "clmm_probit"
    for shown, r in zip(rows, eff.to_dict("records"), strict=True):
        b, lo, hi = r["estimate"], r["ci_low"], r["ci_high"]
        f = (lambda x: x) if probit else math.exp
        assert str(shown["estimate"]) == f"{f(b):.2f}"
        assert str(shown["ci"]) == f"[{f(lo):.2f}, {f(hi):.2f}]"
        assert str(shown["estimate"]) != f"{100 * b:.2f}"
        assert shown["factor"] == 1.0 and not shown["scale"].difference
        assert shown["scale"].column == ("Latent shift (probit, SD)" if probit
                                         else "Odds ratio")


def test_scale_is_read_from_the_stored_fit_not_the_name() -> None:
    # a model named like a linear one is still a ratio if its stored fit is a Poisson GLMM
    res = {"spec": {"name": "perceptions_growth", "kind": "growth"},
           "fit": {"kind": "glmm", "family": "poisson", "link": "log"}}
    assert effect_scale(res).column == "Rate ratio"
    assert effect_scale({"spec": {"name": "x_glmm"}, "fit": {"kind": "lmm"}}).difference
    # an unknown link is refused loudly, never printed as a difference
    with pytest.raises(ValueError, match="no interpretable scale"):
        effect_scale({"spec": {"name": "m"},
                      "fit": {"kind": "glmm", "family": "binomial", "link": "cloglog"}})
    with pytest.raises(ReportError, match="no interpretable scale"):
        build._scale_of({"spec": {"name": "m"}, "fit": {"kind": "other", "link": "log"}})
