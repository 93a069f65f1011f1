"""The impact report: self-contained, complete, readable, and free of identifiers."""

from __future__ import annotations

import base64
import html as htmlmod
import json
import re

import pandas as pd
import pytest

from ..conftest import DEMO


def _text(page: str) -> str:
    """What a reader sees: no markup, no style, no embedded downloads."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    page = re.sub(r'href="data:[^"]*"', "", page)
    page = re.sub(r"<svg.*?</svg>", " [figure] ", page, flags=re.S)
    return htmlmod.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _section(page: str, sid: str) -> str:
    start = page.index(f'id="{sid}"')
    end = page.find("<section", start)
    return page[start: end if end > 0 else None]


def test_report_sections_and_self_contained(demo_run) -> None:
    page = demo_run[3].read_text()
    for sid, heading in (("summary", "Summary for funders"), ("study", "The study"),
                         ("balance", "Baseline balance"),
                         ("output-perceptions", "Perceptions of the other side"),
                         ("output-relationships", "Relationships across the divide"),
                         ("output-moderation", "Effective moderation"),
                         ("output-ideas", "Idea generation"), ("for-whom", "For whom"),
                         ("robustness", "Robustness"), ("methods", "Methods and limitations"),
                         ("provenance", "Provenance and deviations"),
                         ("appendix", "Appendix: model terms")):
        assert f'id="{sid}"' in page, sid
        assert f'href="#{sid}"' in page, f"{sid} missing from the table of contents"
        assert heading in page
    assert page.count("<svg") >= 8  # trajectories, per dialogue, spaghetti, flow
    assert "data:image/png" not in page  # vector figures only
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from elsewhere
    assert "<script" not in page  # WeasyPrint and print need no JavaScript
    assert "Satterthwaite" in page
    assert "measurement invariance" in page.lower() and ">scalar<" in page
    assert "without a score for that reason:" in page


def test_term_names_only_in_the_appendix(demo_run) -> None:
    page = demo_run[3].read_text()
    before = page[: page.index('id="methods"')]
    for code in ("arm[T.", "_durability", "_event_study", "post_time", "dialogue:wave"):
        assert code not in _text(before), code
    appendix = _section(page, "appendix")
    assert "time:arm[T.dialogue]" in appendix and "perceptions_durability" in appendix


def test_no_nan_none_and_pomp_is_spelled_out(demo_run) -> None:
    pages = [demo_run[3], *sorted((demo_run[3].parent / "dialogues").glob("*.html"))]
    for path in pages:
        text = _text(path.read_text())
        assert not re.search(r"\b(nan|NaN|None|inf)\b", text), path.name
        assert "p = <" not in text, path.name
        if "POMP" in text:
            first = text.index("POMP")
            assert "percent of maximum possible" in text[max(0, first - 120): first + 120]


def test_every_figure_has_alt_text(demo_run) -> None:
    pages = [demo_run[3], *sorted((demo_run[3].parent / "dialogues").glob("*.html"))]
    for path in pages:
        page = path.read_text()
        svgs = re.findall(r"<svg[^>]*>.*?</svg>", page, flags=re.S)
        assert svgs, path.name
        for svg in svgs:
            head = svg[: svg.index(">") + 1]
            assert 'role="img"' in head
            alt = re.search(r'aria-label="([^"]{20,})"', head)
            assert alt, head[:200]
            assert re.search(r"<title>[^<]{20,}</title>", svg)
        for img in re.findall(r"<img[^>]*>", page):
            assert re.search(r'alt="[^"]{10,}"', img), img


def test_figures_are_distinguishable_without_colour(demo_run) -> None:
    """Arms differ by marker and line style, the legend is outside the axes, axes have units."""
    from trackii_eval.report.figures import style

    looks = style(["dialogue", "comparison", "x"], {}, "comparison")
    assert len({s.marker for s in looks}) == 3 and len({str(s.linestyle) for s in looks}) == 3
    page = demo_run[3].read_text()
    perceptions = _section(page, "output-perceptions")
    assert "% of maximum possible" in perceptions
    behaviour = _section(page, "output-behaviour")
    assert "% signed up for a cross-side activity" in behaviour  # a yes/no share reads in %
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        assert "own units" not in svg


def test_tables_grouped_by_outcome_with_n_and_downloads(demo_run) -> None:
    page = demo_run[3].read_text()
    perceptions = _section(page, "output-perceptions")
    table = perceptions[perceptions.index('id="effects-perceptions"'):]
    table = table[: table.index("</table>")]
    assert "N (participants)" in table and "Gap in yearly change during the programme" in table
    assert "relationships" not in table.lower()  # only this outcome's estimates
    links = re.findall(r'download="effects-perceptions\.(csv|tex)" href="data:[^;]+;'
                       r'charset=utf-8;base64,([^"]+)"', page)
    assert {ext for ext, _ in links} == {"csv", "tex"}
    files = {ext: base64.b64decode(b).decode() for ext, b in links}
    rows = pd.read_csv(__import__("io").StringIO(files["csv"]))
    assert "N (participants)" in rows.columns and len(rows) >= 4
    assert "\\begin{tabular}" in files["tex"] and "\\toprule" in files["tex"]


def test_participant_flow_and_the_count_of_people(demo_run) -> None:
    page = demo_run[3].read_text()
    study = _section(page, "study")
    assert "Participant flow" in study and 'class="fig flow"' in study
    flow = re.search(r'<svg[^>]*class="fig flow".*?</svg>', study, flags=re.S).group(0)
    for wave in ("After the workshops", "Follow-up year 3"):
        assert wave in flow
    assert "Linked to earlier waves" in flow and "quarantined" in flow
    # why more people than enrolled: new records at later waves are explained
    assert "counted as a new participant" in _text(study)


def test_per_dialogue_reports(demo_run) -> None:
    study, _, _, report = demo_run
    page = report.read_text()
    for d in study.config.dialogues:
        path = report.parent / "dialogues" / f"{d.id}.html"
        assert path.is_file(), d.id
        assert f'href="dialogues/{d.id}.html"' in page
        sub = path.read_text()
        text = _text(sub)
        assert d.name in text and d.objectives in text
        assert "Judged against its objective" in text
        assert sub.count("<svg") >= 2  # its own trajectories
        assert 'href="../report.html"' in sub
        assert "Border escalation" in sub  # context events on its trajectories


def test_headline_numbers_cover_the_simulated_truth(demo_run) -> None:
    """The summary's gap at every wave after baseline covers truth.json's."""
    truth = json.loads((DEMO / "truth.json").read_text())["effects"]["perceptions"]
    text = _text(_section(demo_run[3].read_text(), "summary"))
    study = demo_run[0]
    found = 0
    for w in study.config.waves[1:]:
        m = re.search(re.escape(w.label) + r": (−?[\d.]+) points \(95% CI (−?[\d.]+) to "
                      r"(−?[\d.]+)\)", text)
        assert m, w.label
        lo, hi = (float(x.replace("−", "-")) for x in m.group(2, 3))
        assert lo <= truth["gap_at_each_wave"][str(w.index)] <= hi, (w.label, lo, hi)
        found += 1
    assert found == len(study.config.waves) - 1
    # the yearly gap during the programme covers the simulated gain per year
    m = re.search(r"Gap in yearly change during the programme: (−?[\d.]+) points per year "
                  r"\(95% CI (−?[\d.]+) to (−?[\d.]+)", text)
    assert m
    lo, hi = (float(x.replace("−", "-")) for x in m.group(2, 3))
    assert lo <= truth["model_terms"]["time:arm[T.dialogue]"] <= hi


def test_every_printed_table_number_was_registered(demo_run) -> None:
    """Every data cell of every page is a number disclosure control decided on."""
    from trackii_eval.report.build import report_tables

    study, _, _, report = demo_run
    tables = report_tables(study.store, study.context)
    result = tables.publication.protect()
    printed = {str(s) for s in tables.publication.shown} | {result.marker, "–", ""}
    waves = {str(w.index) for w in study.config.waves}
    pages = [report, *sorted((report.parent / "dialogues").glob("*.html"))]
    checked = 0
    for path in pages:
        for row in re.findall(r"<tr>(.*?)</tr>", path.read_text(), flags=re.S):
            for j, cell in enumerate(re.findall(r"<td>(.*?)</td>", row, flags=re.S)):
                value = htmlmod.unescape(cell)
                if j == 0 and value in waves:
                    continue  # the linkage table's wave column: a label, not data
                if re.search(r"\d", value):
                    assert value in printed, (path.name, value)
                    checked += 1
    assert checked > 200


def test_an_unregistered_number_is_refused() -> None:
    from trackii_eval.errors import ReportError
    from trackii_eval.report.tables import Table, check_registered

    table = Table("t", "A table", ["Group", "n"], [["a", "12"]])
    with pytest.raises(ReportError, match="not registered with disclosure control"):
        check_registered(table)


def test_no_identifier_reaches_the_report_or_store(demo_run) -> None:
    study, _, _, report = demo_run
    raw = pd.concat([pd.read_csv(DEMO / w.file, dtype=str) for w in study.config.waves])
    canaries = set()
    for col in ("participant_code", "name", "email", "phone", "ip_address"):
        canaries |= set(raw[col].dropna())
    outputs = [report.read_text(errors="ignore")]
    outputs += [p.read_text() for p in (report.parent / "dialogues").glob("*.html")]
    outputs.append(study.store_path.read_bytes().decode("latin-1"))
    for text in outputs:
        assert "CANARY" not in text and "CNRY-" not in text
        assert "example.invalid" not in text
    pseudonyms = set(study.store.query("SELECT participant FROM participants")["participant"])
    for text in outputs[:-1]:
        assert not any(p in text for p in pseudonyms)
    for value in list(canaries)[:200]:
        for text in outputs:
            assert value not in text


def test_small_cells_are_suppressed(demo_run) -> None:
    from trackii_eval.report import suppress_count

    assert suppress_count(3, 5) == "<5" and suppress_count(0, 5) == "0"
    assert suppress_count(5, 5) == "5"
    _, _, _, report = demo_run
    html = report.read_text()
    table = html[html.index("baseline people matched"):]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
    assert len(rows) == 5
    for row in rows:
        counts = re.findall(r"<td>([^<]*)</td>", row)[1:-1]  # not the wave, not the rate
        for cell in counts:
            assert cell == "x" or int(cell) == 0 or int(cell) >= 5, cell
    assert "x" in table  # the demo has waves with 1-4 ambiguous or new records


def test_p_values_read_as_text_in_the_summary(demo_run) -> None:
    # "p = <0.001" reads badly; running text says "p < 0.001" (or "p = 0.012")
    head = _section(demo_run[3].read_text(), "summary")
    assert "p = &lt;" not in head and "p = <" not in head
    assert "p &lt; 0.001" in head or "p = 0." in head


def test_sections_show_the_stored_analyses(demo_run) -> None:
    """Durability, reliable change, effect sizes, balance, subgroups (with a forest plot),
    attrition sensitivity and model comparison are read from the store and shown labelled."""
    page = demo_run[3].read_text()
    perceptions = _section(page, "output-perceptions")
    for table in ("gaps-", "persistence-", "reliable-change-", "effect-sizes-",
                  "reliability-perceptions"):
        assert f'id="{table}' in perceptions, table
    assert "Hedges' g" in _text(perceptions) and "Reliably improved" in perceptions
    # the omega interval is shown beside alpha's
    rel = perceptions[perceptions.index('id="reliability-perceptions"'):]
    rel = rel[: rel.index("</table>")]
    assert "McDonald's omega" in _text(rel) and rel.count("[0.") >= 10
    assert 'id="balance-' in _section(page, "balance")
    whom = _section(page, "for-whom")
    assert 'id="subgroups-' in whom and "<svg" in whom and "Forest plot" in whom
    robust = _section(page, "robustness")
    assert 'id="attrition-sensitivity-' in robust and "Multiple imputation" in robust
    assert 'id="model-comparison-' in robust and "AIC" in robust
    summary = _text(_section(page, "summary"))
    assert "of it remained" in summary  # how much of the end-of-programme gain persists
    assert "by dialogue" in summary  # for whom, with CIs
    assert re.search(r"by dialogue \(.*?\): [^;]*95% CI", summary)
