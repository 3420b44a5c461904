"""Browser tests: Debian's chromium, driven by Playwright, against a running ``postroom up``.

One chromium per session (per xdist worker), one platform per module (the root ``platform``
fixture, here on the embedded SQLite only: the UI talks to the same API whatever the database),
a fresh browser context (cookies, storage, cache) per test. The UI must be built first
(``web/dist``, made by ``make test``); without it every test here fails saying so.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.platform import Platform
from tests.support.services import require
from tests.web.canary import Canary
from tests.web.ui import SCREENSHOTS

CHROMIUM = Path("/usr/bin/chromium")
WEB_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"
# Generous: the machine's two cores are shared with the rest of the suite.
TIMEOUT_MS = 30_000

expect.set_options(timeout=TIMEOUT_MS)
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember whether the test itself failed, so ``page`` can keep a picture of why."""
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Overrides the root fixture: the embedded SQLite only, so the root ``platform`` runs once."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'postroom.db'}"


# Module scope, not session: while Playwright's sync API runs it keeps an event loop running
# in this thread, and every later test file on the same xdist worker that calls asyncio.run()
# (the database and Redis fixtures do) would fail. One browser per module is started in ~1 s.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require(CHROMIUM.is_file(), f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail(
            f"{WEB_DIST}/index.html is missing: build the web UI first "
            "(cd web && npm ci && npm run build; `make test` does it)"
        )
    with sync_playwright() as playwright:
        # Debian's browser, never one Playwright downloads.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture
def base_url(platform: Platform) -> str:
    return f"http://127.0.0.1:{platform.http_port}"


@pytest.fixture
def page(browser: Browser, base_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A desktop-size page in a context of its own (nothing shared with other tests). If the
    test fails, what the page showed is kept as ``screenshots/failed-TEST.png``.
    """
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1280, "height": 800}, accept_downloads=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    try:
        opened = context.new_page()
        yield opened
        if request.node.stash.get(FAILED, False):
            SCREENSHOTS.mkdir(exist_ok=True)
            opened.screenshot(path=SCREENSHOTS / f"failed-{request.node.name}.png")
    finally:
        context.close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    with Canary() as running:
        yield running
