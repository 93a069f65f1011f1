"""The impact report: self-contained, complete, and free of identifiers."""

from __future__ import annotations

import re

import pandas as pd

from ..conftest import DEMO


def test_report_sections_and_self_contained(demo_run) -> None:
    _, _, _, report = demo_run
    html = report.read_text()
    for heading in ("Trajectories", "Effects", "Response and attrition", "Effective moderation",
                    "Idea generation", "Measurement quality", "Methods"):
        assert f"<h2>{heading}</h2>" in html
    assert html.count("data:image/png;base64,") >= 2
    assert not re.search(r'src="(?!data:)', html)  # nothing loaded from elsewhere
    assert "time:arm[T.dialogue]" in html
    assert "Satterthwaite" in html
    assert "measurement invariance" in html and ">scalar<" in html
    assert "Relationships across the divide" in html
    assert "without a score for that reason:" in html


def test_no_identifier_reaches_the_report_or_store(demo_run) -> None:
    study, _, _, report = demo_run
    raw = pd.concat([pd.read_csv(DEMO / w.file, dtype=str) for w in study.config.waves])
    canaries = set()
    for col in ("participant_code", "name", "email", "phone", "ip_address"):
        canaries |= set(raw[col].dropna())
    outputs = [report.read_text(errors="ignore")]
    outputs.append(study.store_path.read_bytes().decode("latin-1"))
    for text in outputs:
        assert "CANARY" not in text and "CNRY-" not in text
        assert "example.invalid" not in text
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


def test_p_values_read_as_text_in_the_headline(demo_run) -> None:
    # "p = <0.001" reads badly; running text says "p < 0.001" (or "p = 0.012")
    html = demo_run[3].read_text()
    head = html[html.index('class="headline"'):]
    head = head[: head.index("</div>")]
    assert "p = &lt;" not in head and "p = <" not in head
    assert "p &lt; 0.001" in head or "p = 0." in head
