"""Must show (issue 14): the portfolio dashboard loads offline (file://, network closed) in a
real headless Chromium, with no console errors, and a filter change updates the view (checked
in the DOM); screenshots kept in build/test-artefacts/."""

from __future__ import annotations

from tests.dashboard.conftest import built, portfolio_dirs  # noqa: F401  (session fixtures)

from .harness import PAGE_TIMEOUT, _full_page_screenshot


def _wait_ready(driver) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, PAGE_TIMEOUT).until(
        lambda d: d.execute_script("return document.body.dataset.ready || ''") != "")
    return driver.execute_script("return document.body.dataset.ready")


def _rerun(driver) -> None:
    """Wait until the view has processed the dropdown's change."""
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.dashboardView.runAsync().then(() => done(1));")


def _marks(driver) -> dict[str, int]:
    """Rendered line and point marks, and the series legends' labels."""
    return driver.execute_script("""
        const svg = document.querySelector('#vis svg');
        const lines = svg.querySelectorAll('g.mark-line path').length;
        const points = svg.querySelectorAll('g.mark-symbol path').length;
        // the series legends ("study · group · side") of the means and respondents charts
        const labels = Array.from(svg.querySelectorAll('g.role-legend-label text'))
                            .map(t => t.textContent).filter(t => t.includes(' · '));
        return {lines: lines, points: points, labels: labels};
    """)


def test_dashboard_offline_filters_update_the_view(built, open_page, artefact_dir):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, out, _ = built
    page = open_page(out / "dashboard.html")
    driver = page.driver
    assert page.url.startswith("file://")
    assert _wait_ready(driver) == "1", "vegaEmbed did not render the dashboard"
    errors = page.errors + [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors
    assert "Portfolio summary" in page.text and "Cost-effectiveness" in page.text
    before = _marks(driver)
    assert before["points"] > 0
    assert any(lab.startswith("demo ·") for lab in before["labels"])
    assert any(lab.startswith("coast ·") for lab in before["labels"])
    _full_page_screenshot(driver, artefact_dir / "dashboard-all-studies.png")

    selects = driver.find_elements(By.CSS_SELECTOR, "#vis .vega-bindings select")
    assert len(selects) == 5  # study, dialogue, side, wave, output
    Select(selects[0]).select_by_visible_text("coast")
    _rerun(driver)
    after = _marks(driver)
    assert after["points"] < before["points"]
    assert after["labels"] and all(lab.startswith("coast ·") for lab in after["labels"])

    Select(selects[2]).select_by_visible_text("Upland")  # one side of the coast dialogues
    _rerun(driver)
    side = _marks(driver)
    assert side["labels"] and all("Upland" in lab for lab in side["labels"])
    shot = artefact_dir / "dashboard-coast-upland.png"
    _full_page_screenshot(driver, shot)
    assert shot.stat().st_size > 10_000
    assert not [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
