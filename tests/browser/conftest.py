"""Fixtures of the browser-test harness; see :mod:`tests.browser.harness` for the API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import ARTEFACTS, Browser, Page, require_browser, start_chromium


@pytest.fixture(scope="session")
def artefact_dir() -> Path:
    """``build/test-artefacts/`` (gitignored), where screenshots and other artefacts are kept."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory, artefact_dir: Path) -> Iterator[Browser]:
    """One headless Chromium for the session (fresh profile); fails loudly if not installed."""
    require_browser()
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield Browser(driver, artefact_dir)
    finally:
        driver.quit()


@pytest.fixture()
def open_page(browser: Browser, request: pytest.FixtureRequest
              ) -> Callable[[str | Path, str | None], Page]:
    """``open_page(target, name=None) -> Page``; the screenshot is named after the test."""

    def _open(target: str | Path, name: str | None = None) -> Page:
        stem = request.node.name + (f"-{name}" if name else "")
        return browser.open(target, stem)

    return _open
