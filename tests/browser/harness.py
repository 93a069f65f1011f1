"""Browser-test harness: a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by Selenium with an explicit driver path, for pages of the report and the dashboard.

API
---
Fixtures (in ``tests/browser/conftest.py``; available to every test under ``tests/browser/``):

``browser`` (session scope) -> :class:`Browser`
    One Chromium per test session (per xdist worker), with a fresh ``--user-data-dir``, network
    off (every host name but ``localhost`` fails to resolve), console logging on. Fails the
    test loudly, with the ``apt-get`` command, when Chromium, its driver or Selenium is missing.
``open_page`` (function scope) -> ``Callable[[str | Path, str | None], Page]``
    ``open_page(target, name=None)`` loads ``target`` (a local file ``Path``, or a ``file://``
    or ``http://localhost...`` URL), waits for ``document.readyState == "complete"`` and
    returns a :class:`Page`. Its full-page screenshot is saved under
    ``build/test-artefacts/<test name>[-<name>].png`` (gitignored; kept after the run).
``artefact_dir`` (session scope) -> ``Path``
    ``build/test-artefacts/`` in the repository, created on first use.

Functions and classes (importable from anywhere: ``from tests.browser.harness import ...``):

``Browser(driver, artefacts)``
    ``.open(target, name) -> Page`` as above (``name`` is the screenshot's file stem, made
    file-safe); ``.driver`` is the Selenium ``WebDriver`` for anything else.
``Page`` (frozen dataclass)
    ``driver`` (WebDriver, still on this page), ``url``, ``title``, ``text`` (the body's
    ``innerText``), ``logs`` (every console entry: dicts with ``level``, ``message``,
    ``source``, ``timestamp``), ``errors`` (the ``SEVERE`` entries, less the browser's own
    request for ``/favicon.ico``), ``screenshot`` (``Path`` of the PNG).
``start_chromium(user_data_dir, width=1280, height=900) -> WebDriver``
    The driver on its own (the caller quits it).
``require_browser()``
    Fails (or skips, see below) unless Chromium, chromedriver and Selenium are present.
``require_tool(name, package)``
    The same for another executable (e.g. ``require_tool("pdftoppm", "poppler-utils")``).
``serve_folder(folder) -> ContextManager[str]``
    Serves a folder on ``http://localhost:<free port>/`` from a thread; yields the base URL
    (ends with ``/``).

A missing browser or tool fails the test with the command that installs it. A developer without
them may set ``TRACKII_SKIP_BROWSER=1`` to skip these tests instead; CI never sets it, and with
``CI`` set the variable is ignored (a missing browser fails CI). ``TRACKII_CHROMIUM`` and
``TRACKII_CHROMEDRIVER`` override the paths ``/usr/bin/chromium`` and ``/usr/bin/chromedriver``.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = ROOT / "build" / "test-artefacts"
CHROMIUM = Path(os.environ.get("TRACKII_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TRACKII_CHROMEDRIVER", "/usr/bin/chromedriver"))
INSTALL = "apt-get install -y chromium chromium-driver poppler-utils"
OPT_OUT = "TRACKII_SKIP_BROWSER"
#: Seconds a page may take to load before the test fails.
PAGE_TIMEOUT = 30

# The browser runs with the network closed and nothing in the background that phones home:
# a report must be self-contained, and a test must not wait on a download.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
)


def _missing(what: str, fix: str) -> None:
    """Fail (or, on a developer's explicit opt-out outside CI, skip) for a missing tool."""
    if os.environ.get(OPT_OUT) == "1" and not os.environ.get("CI"):
        pytest.skip(f"{what} missing and {OPT_OUT}=1: browser/PDF checks not run")
    pytest.fail(f"{what} missing: install it with `{fix}` (or set {OPT_OUT}=1 to skip these "
                "tests on a development machine; CI never skips them)", pytrace=False)


def require_tool(name: str, package: str) -> str:
    """The path of executable ``name``; fails the test, naming the Debian ``package``, if absent."""
    path = shutil.which(name)
    if path is None:
        _missing(f"`{name}` (Debian package {package})", f"apt-get install -y {package}")
    return str(path)


def require_browser() -> None:
    """Fail the test loudly unless Chromium, chromedriver and Selenium are all installed."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            _missing(f"{path} (Debian package {package})", INSTALL)
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("the Python package selenium", "pip install -e '.[dev]'")


def start_chromium(user_data_dir: Path, width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium WebDriver with console logging, at the explicit Debian paths.

    Parameters
    ----------
    user_data_dir
        An empty folder for the browser profile (a fresh one per browser).
    width, height
        The window size in CSS pixels.

    Returns
    -------
    selenium.webdriver.Chrome
        The caller must ``quit()`` it.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # no Selenium Manager telemetry
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: Selenium Manager (which would download a driver) never runs
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    return driver


@dataclass(frozen=True)
class Page:
    """A loaded page: what the browser showed and said (see the module docstring)."""

    driver: Any
    url: str
    title: str
    text: str
    logs: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    screenshot: Path


def _url(target: str | Path) -> str:
    if isinstance(target, Path):
        return target.resolve().as_uri()
    if re.match(r"(file|https?)://", target):
        return target
    return Path(target).resolve().as_uri()


class Browser:
    """One Chromium: open pages, collect their console output, keep their screenshots."""

    def __init__(self, driver: Any, artefacts: Path) -> None:
        self.driver = driver
        self.artefacts = artefacts

    def open(self, target: str | Path, name: str) -> Page:
        """Load ``target``, wait for it to finish, screenshot the whole page, return a Page."""
        from selenium.webdriver.support.ui import WebDriverWait

        d = self.driver
        d.get_log("browser")  # the log is read-and-clear: drop the previous page's entries
        url = _url(target)
        d.get(url)
        WebDriverWait(d, PAGE_TIMEOUT).until(
            lambda drv: drv.execute_script("return document.readyState") == "complete")
        text = d.execute_script("return document.body ? document.body.innerText : ''")
        shot = self.artefacts / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".png")
        _full_page_screenshot(d, shot)
        logs = d.get_log("browser")
        errors = [e for e in logs if e.get("level") == "SEVERE"
                  and "favicon.ico" not in e.get("message", "")]
        return Page(driver=d, url=url, title=d.title, text=text, logs=logs, errors=errors,
                    screenshot=shot)


def _full_page_screenshot(driver: Any, path: Path) -> None:
    """The whole scrollable page as one PNG (Chromium's DevTools capture beyond the viewport)."""
    import base64

    path.parent.mkdir(parents=True, exist_ok=True)
    size = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    # capped so a runaway page cannot make a gigapixel image
    width, height = min(int(size[0]), 4000), min(int(size[1]), 30000)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
    })
    path.write_bytes(base64.b64decode(shot["data"]))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on localhost (a free port) for the duration of the block.

    Yields
    ------
    str
        The base URL, e.g. ``"http://localhost:41234/"``.
    """
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("localhost", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
