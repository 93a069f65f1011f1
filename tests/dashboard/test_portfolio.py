"""The demo portfolio dashboard: truth recovered, nothing about fewer than k people, jointly
protected with the reports, one offline file."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from trackii_eval.dashboard.build import ALL, build_dashboard, portfolio_tables
from trackii_eval.disclosure import audit
from trackii_eval.disclosure.primary import primary_reason

ROOT = Path(__file__).resolve().parents[2]


def _spec(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r"const spec = (\{.*?\});\nvegaEmbed", text, flags=re.S)
    assert m, "no Vega-Lite spec in the dashboard"
    return json.loads(m.group(1))


def _dataset(spec: dict, field: str) -> list[dict]:
    found = [rows for rows in spec["datasets"].values() if rows and field in rows[0]]
    assert found, f"no dataset with field {field!r}"
    return found[0]


def test_pooled_effect_recovers_both_studies_truth(built):
    dash, _, _ = built
    truths = []
    for name in ("demo", "coast"):
        truth = json.loads((ROOT / "surveys" / name / "truth.json").read_text())
        study = __import__("yaml").safe_load((ROOT / "surveys" / name / "study.yaml").read_text())
        end = str(study["program_end_wave"])
        truths.append(truth["effects"]["perceptions"]["gap_at_each_wave"][end])
    pooled = {m["method"]: m["_raw"] for m in dash.meta
              if m["construct"] == "perceptions" and m["timepoint"] == "end of programme"}
    headline = pooled["REML + Knapp-Hartung"]
    assert headline.k == 5  # three demo dialogues and two coast dialogues
    for t in truths:
        assert headline.ci_low <= t <= headline.ci_high, (t, headline)
    # and not by an interval so wide it would cover anything: no effect is excluded
    assert headline.ci_low > 0
    # the per-dialogue truths of the coast study differ (+-1.5 points a year): tau^2 is
    # estimated, not assumed, and I^2 is reported
    assert all(r.i2 >= 0 and r.q >= 0 for r in pooled.values())


def test_no_published_cell_describes_fewer_than_k(built):
    dash, _, _ = built
    result = dash.publication.result
    k = dash.publication.k
    for cid, cell in dash.publication.tables.cells.items():
        if result.status[cid] == "published":
            assert primary_reason(cell, k) is None, (cid, cell)
    # the attacker's linear programs on the dashboard and both reports together
    assert audit(result.system, result.suppressed, k) == []
    tables = {t.split("/", 1)[1] for t, _ in result.status if "/" in t}
    assert {"response", "effects", "dash_response", "dash_means"} <= tables


def test_embedded_means_are_of_groups_of_k_or_more(built):
    dash, out, studies = built
    k = dash.publication.k
    spec = _spec(out / "dashboard.html")
    means = _dataset(spec, "mean")
    assert means
    scores = {s.context.study_id: s.store.query("SELECT * FROM scores WHERE score IS NOT NULL")
              for s in studies}
    for r in means:
        sc = scores[r["study"]]
        g = sc[(sc["construct"] == r["construct"]) & (sc["wave"] == r["wave"])
               & (sc["arm"] == r["arm"])]
        if r["dialogue"] not in (ALL, "comparison"):
            g = g[g["dialogue"] == r["dialogue"]]
        if r["side"] != ALL:
            g = g[g["side"] == r["side"]]
        assert len(g) >= k, r
        assert r["mean"] == pytest.approx(g["score"].mean(), abs=0.006)
    for r in _dataset(spec, "retained_pct"):
        assert r["n"] is None or r["n"] == 0 or r["n"] >= k


def test_strict_k_suppresses_and_still_audits(portfolio_dirs):
    # with k = 15 some side groups and late waves are too small: they must vanish from the
    # data (not merely be hidden), and the joint audit must still pass
    from trackii_eval.dashboard.build import dashboard_data, load_portfolio

    studies = load_portfolio([(ROOT / "surveys" / "coast", portfolio_dirs["coast"])])
    try:
        dash = portfolio_tables(studies, k=15)
        result = dash.publication.protect()
        assert result.counts["primary"] > 0
        assert result.audit() == []
        data = dashboard_data(dash)
        for r in data["respondents"]:
            assert r["n"] is None or r["n"] == 0 or r["n"] >= 15
        assert any(r["n"] is None for r in data["respondents"])  # something was suppressed
        for v in dash.studies:
            for row in v.respondents:
                if row["n"].hidden:
                    assert not any(d["n"] == int(row["n"].text) and d["study"] == v.study
                                   and d["wave"] == row["wave"] and d["side"] == row["side"]
                                   and d["dialogue"] == row["dialogue"]
                                   for d in data["respondents"])
    finally:
        for s in studies:
            s.store.close()


def test_one_offline_file_and_joint_reports(built):
    _, out, _ = built
    html = (out / "dashboard.html").read_text(encoding="utf-8")
    assert "<script src" not in html and "<link" not in html  # nothing fetched
    assert "window.vegaEmbed" in html
    for sid in ("demo", "coast"):
        report = (out / "reports" / sid / "report.html").read_text(encoding="utf-8")
        assert "isclosure control" in report
    assert (out / "reports" / "demo" / "dialogues").is_dir()
    spec = _spec(out / "dashboard.html")
    names = {p["name"] for p in spec["params"]}
    assert {"study_sel", "dialogue_sel", "side_sel", "wave_sel", "output_sel"} <= names


def test_cost_effectiveness_rows(built):
    dash, _, _ = built
    rows = {(c["study"], c["dialogue"]): c for c in dash.costs}
    assert set(rows) == {("demo", "D1"), ("demo", "D2"), ("demo", "D3"), ("coast", "F1"),
                         ("coast", "F2")}
    d1 = rows[("demo", "D1")]
    # 210,000 EUR over the 50 people at baseline
    assert str(d1["per_participant"]) == "4,200"
    assert any(name == "cost per participant" for name, _, _, _ in d1["targets"])


def test_serve_answers_on_localhost(built):
    from trackii_eval.dashboard.serve import serve

    _, out, _ = built
    server, url = serve(out, background=True)
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            assert b"vegaEmbed" in resp.read()
    finally:
        server.shutdown()
        server.server_close()


def test_cli_dashboard(portfolio_dirs, tmp_path):
    from typer.testing import CliRunner

    from trackii_eval.cli import app

    # one study is a portfolio too (and keeps this test short)
    args = [f"{ROOT / 'surveys' / 'coast'}={portfolio_dirs['coast']}"]
    res = CliRunner().invoke(app, ["dashboard", *args, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "dashboard.html").exists()
    assert (tmp_path / "reports" / "coast" / "report.html").exists()
    res = CliRunner().invoke(app, ["dashboard", str(ROOT / "surveys" / "demo") + "="
                                   + str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert res.exit_code == 6 and "no store" in res.output


def test_same_study_twice_is_refused(portfolio_dirs, tmp_path):
    from trackii_eval.dashboard.build import load_portfolio
    from trackii_eval.errors import ReportError

    d = portfolio_dirs["demo"]
    studies = load_portfolio([(ROOT / "surveys" / "demo", d), (ROOT / "surveys" / "demo", d)])
    try:
        with pytest.raises(ReportError, match="distinct"):
            build_dashboard(studies, tmp_path)
    finally:
        for s in studies:
            s.store.close()


def test_no_identifier_or_pseudonym_in_the_dashboard(built):
    # the project's output audit: every identifier value of each study's raw files (canary
    # names, e-mails, codes), store pseudonyms, and counts below k
    from typer.testing import CliRunner

    from trackii_eval.cli import app

    _, out, _ = built
    for name in ("demo", "coast"):
        res = CliRunner().invoke(app, ["audit", str(out / "dashboard.html"), "--study",
                                       str(ROOT / "surveys" / name)])
        assert res.exit_code == 0, res.output
        assert "0 finding" in res.output
