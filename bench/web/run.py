"""The web UI's weight and speed: gzipped JavaScript of the first load, and the time from
navigation to the first message row with 10 000 messages in the Inbox (issue 8, point 9).

    .venv/bin/python -m bench.web.run                        # 10 000 messages, 7 runs
    .venv/bin/python -m bench.web.run --messages 1000 --runs 3   # a quick check

``postroom up`` on the embedded defaults (SQLite, files, in-process queues) serves the built UI
(``web/dist``). The Inbox is filled in bulk through the storage layer (``bench.search.corpus``,
the rows the processor would write), not over SMTP. Debian's chromium, driven by Playwright,
with the HTTP cache disabled so every run loads the app as a first visit does:

- **JavaScript**: every response the browser takes as JavaScript while loading ``/`` up to the
  sign-in form, and up to the first message row after signing in; each body gzipped at level 9
  (what a server compressing at its best would send). Target: under 200 KB.
- **first list render**: sign in, then navigate to ``/`` again (a returning, signed-in user);
  from navigation start (``performance.now()`` is 0 there) to the animation frame in which the
  first ``data-testid="message-row"`` is in the page. Target: under 1 s (p50 and max).
- **baselines, same run, same browser**: the API list call alone (the exact request the app
  made for its first page, with ``fetch`` from the page, body parsed), and a static HTML page
  with as many rows as the app first showed, built from that answer, from navigation start to
  the frame with its first row (served by Playwright's router, no server behind it).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import html
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, Request, Response, sync_playwright

from bench.search.corpus import build_corpus, load_corpus
from bench.support import _database_url, markdown_table, note, write_result
from bench.targets import Target, write_targets
from postroom.settings import Settings
from storage.registry import open_storage
from tests.support.platform import Platform

REPO = Path(__file__).resolve().parents[2]
WEB_DIST = REPO / "web" / "dist"
CHROMIUM = "/usr/bin/chromium"
USER = "user0@bench.test"  # the first user ``load_corpus`` creates, with its password
PASSWORD = "bench password 123"
TARGET_GZIP_KB = 200.0
TARGET_RENDER_MS = 1000.0
TIMEOUT_MS = 60_000

# Runs in every document before the app's own scripts: once a message row is in the DOM, the
# time of the next animation frame (the one that paints it). A plain querySelector per batch of
# mutations; nothing that forces layout while the app renders.
FIRST_ROW_PROBE = """
(() => {
  const observer = new MutationObserver(() => {
    if (document.querySelector('[data-testid="message-row"]')) {
      observer.disconnect();
      requestAnimationFrame(() => { window.__firstRowMs = performance.now(); });
    }
  });
  observer.observe(document, { childList: true, subtree: true });
})();
"""


@dataclass
class Scripts:
    """JavaScript responses seen by one page: URL -> body."""

    bodies: dict[str, bytes] = field(default_factory=dict)

    def record(self, response: Response) -> None:
        kind = response.headers.get("content-type", "")
        if "javascript" in kind or response.request.resource_type == "script":
            try:
                self.bodies[response.url] = response.body()
            except Exception as exc:  # a body the browser dropped: say so, never guess
                note(f"could not read {response.url}: {exc}")

    def sizes(self) -> tuple[int, int, int]:
        """(files, raw bytes, bytes gzipped at level 9 one by one)."""
        raw = sum(len(body) for body in self.bodies.values())
        packed = sum(len(gzip.compress(body, compresslevel=9)) for body in self.bodies.values())
        return len(self.bodies), raw, packed


def _cold(page: Page) -> None:
    """No HTTP cache: every navigation loads the app as a first visit would."""
    session = page.context.new_cdp_session(page)
    session.send("Network.setCacheDisabled", {"cacheDisabled": True})


def _sign_in(page: Page) -> None:
    page.get_by_label("Email").fill(USER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _first_row_ms(page: Page) -> float:
    page.wait_for_function("() => window.__firstRowMs !== undefined", timeout=TIMEOUT_MS)
    return float(page.evaluate("window.__firstRowMs"))


def _context(browser: Browser, base_url: str) -> BrowserContext:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(FIRST_ROW_PROBE)
    return context


@dataclass
class Loaded:
    """What one signed-in load of the app showed and asked for."""

    sign_in_scripts: Scripts
    all_scripts: Scripts
    list_url: str
    authorization: str
    rows: int
    session_kept: bool


def measure_load(browser: Browser, base_url: str) -> Loaded:
    """The first visit: JavaScript up to the sign-in form, then up to the first row; and the
    list request the app makes, to replay as a baseline.
    """
    context = _context(browser, base_url)
    try:
        page = context.new_page()
        _cold(page)
        before, everything = Scripts(), Scripts()
        lists: list[Request] = []
        page.on("response", everything.record)
        page.on(
            "request",
            lambda r: (
                lists.append(r) if "/api/v1/messages?" in r.url and r.method == "GET" else None
            ),
        )
        page.goto("/")
        page.get_by_role("button", name="Sign in").wait_for()
        page.wait_for_load_state("networkidle")
        before.bodies.update(everything.bodies)
        _sign_in(page)
        page.get_by_test_id("message-row").first.wait_for()
        page.wait_for_load_state("networkidle")
        rows = page.get_by_test_id("message-row").count()
        if not lists:
            raise RuntimeError("the app listed the Inbox without GET /api/v1/messages?...")
        first = lists[0]
        authorization = first.all_headers().get("authorization", "")
        page.goto("/")
        row = page.get_by_test_id("message-row").first
        row.or_(page.get_by_role("button", name="Sign in")).wait_for()
        session_kept = row.is_visible()
        return Loaded(before, everything, first.url, authorization, rows, session_kept)
    finally:
        context.close()


def measure_render(browser: Browser, base_url: str, session_kept: bool) -> float:
    """One run: navigation start to the frame with the first row (signed in beforehand), or,
    if the app forgets the session on navigation, from the Sign in click in the same document.
    """
    context = _context(browser, base_url)
    try:
        page = context.new_page()
        page.goto("/")
        if session_kept:
            _sign_in(page)
            page.get_by_test_id("message-row").first.wait_for()
            _cold(page)
            page.goto("/")
            return _first_row_ms(page)
        _cold(page)
        page.get_by_role("button", name="Sign in").wait_for()
        page.get_by_label("Email").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        clicked = float(page.evaluate("performance.now()"))
        page.get_by_role("button", name="Sign in").click()
        return _first_row_ms(page) - clicked
    finally:
        context.close()


def measure_api(browser: Browser, base_url: str, loaded: Loaded, runs: int) -> list[float]:
    """The app's own first list request, replayed with ``fetch`` from a page of the same
    origin, the JSON parsed: the floor under any UI.
    """
    context = _context(browser, base_url)
    try:
        page = context.new_page()
        page.goto("/healthz")
        timings = page.evaluate(
            """async ([url, authorization, runs]) => {
                const out = [];
                for (let i = 0; i < runs + 1; i++) {
                    const began = performance.now();
                    const response = await fetch(url, {
                        headers: authorization ? { Authorization: authorization } : {},
                        cache: "no-store",
                    });
                    await response.json();
                    out.push(performance.now() - began);
                }
                return out.slice(1);
            }""",
            [loaded.list_url, loaded.authorization, runs],
        )
        return [float(t) for t in timings]
    finally:
        context.close()


def static_page(items: Sequence[dict[str, Any]]) -> str:
    """The rows the app first showed, as plain server-rendered HTML: no script at all."""
    rows = "\n".join(
        '<div role="row" data-testid="message-row">'
        f"<span>{html.escape(item['from']['name'] or item['from']['address'])}</span> "
        f'<span data-testid="row-subject">{html.escape(item["subject"])}</span> '
        f"<span>{html.escape(item['snippet'])}</span> <span>{html.escape(str(item['date']))}</span>"
        "</div>"
        for item in items
    )
    return (
        '<!doctype html><meta charset="utf-8"><title>baseline</title>'
        f'<div role="grid" aria-label="Messages">{rows}</div>'
    )


def measure_static(browser: Browser, base_url: str, document: str, runs: int) -> list[float]:
    context = _context(browser, base_url)
    try:
        context.route(
            f"{base_url}/static-baseline",
            lambda route: route.fulfill(body=document, content_type="text/html; charset=utf-8"),
        )
        page = context.new_page()
        timings = []
        for _ in range(runs + 1):
            page.goto("/static-baseline")
            timings.append(_first_row_ms(page))
        return timings[1:]
    finally:
        context.close()


def list_items(loaded: Loaded, rows: int) -> list[dict[str, Any]]:
    """The messages the app showed first, from the same list call it made."""
    headers = {"Authorization": loaded.authorization} if loaded.authorization else {}
    response = httpx.get(loaded.list_url, headers=headers, timeout=60)
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items[: max(rows, 1)]


async def _load(url: str, data_dir: Path, count: int) -> None:
    corpus, messages = build_corpus(count, users=1)
    for _, _, meta in messages:
        meta["mailbox"] = "inbox"
    store = open_storage(Settings(data_dir=data_dir, database_url=url))
    try:
        await load_corpus(store.db, corpus, messages)
    finally:
        await store.close()


def _ms(samples: Sequence[float]) -> tuple[str, str]:
    return f"{statistics.median(samples):.0f}", f"{max(samples):.0f}"


def run(messages: int, runs: int) -> tuple[str, list[Target]]:
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(
            prefix="postroom-bench-web-", ignore_cleanup_errors=True
        ) as tmp,
        _database_url("sqlite", Path(tmp)) as url,
    ):
        platform = Platform(Path(tmp), url)
        migrated = platform.cli("migrate")
        if migrated.returncode != 0:
            raise RuntimeError(f"postroom migrate failed: {migrated.stderr}")
        note(f"loading {messages} messages into {USER}'s Inbox")
        began = time.perf_counter()
        asyncio.run(_load(url, Path(tmp), messages))
        loaded_in = time.perf_counter() - began
        note(f"loaded in {loaded_in:.0f} s; starting postroom up")
        platform.start()
        base_url = f"http://127.0.0.1:{platform.http_port}"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM)
                try:
                    note("first visit: JavaScript and the list request")
                    loaded = measure_load(browser, base_url)
                    note(f"render runs ({runs} + 1 warm-up)")
                    renders = [
                        measure_render(browser, base_url, loaded.session_kept)
                        for _ in range(runs + 1)
                    ][1:]
                    note("baselines")
                    api = measure_api(browser, base_url, loaded, runs)
                    items = list_items(loaded, loaded.rows)
                    static = measure_static(browser, base_url, static_page(items), runs)
                finally:
                    browser.close()
        finally:
            try:
                platform.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                platform.stop()
    load_after = os.getloadavg()[0]
    return report(messages, runs, loaded, renders, api, static, (load_before, load_after))


def report(
    messages: int,
    runs: int,
    loaded: Loaded,
    renders: list[float],
    api: list[float],
    static: list[float],
    load: tuple[float, float],
) -> tuple[str, list[Target]]:
    js_rows = []
    for label, scripts in (
        ("`/` to the sign-in form", loaded.sign_in_scripts),
        ("`/` to the first message row (after sign-in)", loaded.all_scripts),
    ):
        files, raw, packed = scripts.sizes()
        js_rows.append([label, str(files), f"{raw / 1024:.1f}", f"{packed / 1024:.1f}"])
    _, _, total_gzip = loaded.all_scripts.sizes()
    render_p50, render_max = statistics.median(renders), max(renders)
    static_p50, api_p50 = statistics.median(static), statistics.median(api)
    how = (
        "navigation start of a signed-in reload of `/`"
        if loaded.session_kept
        else "the Sign in click (the app does not keep the session across a reload)"
    )
    render_rows = [
        ["postroom web UI: first message row", *_ms(renders), "1.00x"],
        [
            f"static HTML page, same {loaded.rows} rows",
            *_ms(static),
            f"{render_p50 / static_p50:.2f}x" if static_p50 else "-",
        ],
        [
            "API list call alone (the app's request, fetch + JSON)",
            *_ms(api),
            f"{render_p50 / api_p50:.2f}x" if api_p50 else "-",
        ],
    ]
    targets = [
        Target(
            8,
            "web",
            "JavaScript to the first list, gzip -9",
            f"{total_gzip / 1024:.1f} KB",
            f"< {TARGET_GZIP_KB:.0f} KB",
            total_gzip / 1024 < TARGET_GZIP_KB,
        ),
        Target(
            8,
            "web",
            f"first message row, {messages} in Inbox ({runs} runs)",
            f"p50 {render_p50:.0f} ms, max {render_max:.0f} ms",
            f"< {TARGET_RENDER_MS:.0f} ms",
            render_max < TARGET_RENDER_MS,
        ),
    ]
    verdicts = [f"{t.measure}: {t.result} (target {t.wanted})" for t in targets if not t.met]
    markdown = (
        "## web\n\n"
        f"`postroom up` on the embedded defaults, {messages} messages in the Inbox (bulk-loaded "
        f"through the storage layer), Debian chromium via Playwright, HTTP cache disabled. "
        f"Load average {load[0]:.1f} before, {load[1]:.1f} after (2 cores shared).\n\n"
        "### JavaScript the browser loads (each response gzipped at level 9)\n\n"
        + markdown_table(["load", "files", "raw KB", "gzip -9 KB"], js_rows)
        + f"\nTarget: under {TARGET_GZIP_KB:.0f} KB gzipped.\n\n"
        "### Time to the first message row\n\n"
        f"From {how} to the animation frame that paints the first row; {runs} runs after one "
        f"warm-up. The app showed {loaded.rows} rows first. 'x' = app p50 / baseline p50.\n\n"
        + markdown_table(["what", "p50 ms", "max ms", "app vs it"], render_rows)
        + f"\nTarget: under {TARGET_RENDER_MS:.0f} ms.\n\n"
        + ("Missed targets: " + "; ".join(verdicts) + ".\n" if verdicts else "Both targets met.\n")
    )
    return markdown, targets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web.run", description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7, help="timed runs per measurement")
    args = parser.parse_args(argv)
    if not (WEB_DIST / "index.html").is_file():
        print(
            f"bench/web: {WEB_DIST}/index.html is missing; build the UI first "
            "(cd web && npm ci && npm run build)",
            file=sys.stderr,
        )
        return 2
    if not Path(CHROMIUM).is_file():
        print(
            f"bench/web: {CHROMIUM} is missing (Debian: apt-get install chromium)", file=sys.stderr
        )
        return 2
    summary, targets = run(args.messages, args.runs)
    print(summary)
    write_result("web", summary)
    write_targets("web", targets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
