"""Live updates when the WebSocket cannot help (issue 8, point 6): with realtime unreachable the
app falls back to long polling and new mail still appears; after the network drops and comes
back, the app reconnects and catches up on the mail it missed, all without a reload.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.support.platform import Platform
from tests.web.ui import row, send_over_smtp, sign_in

pytestmark = pytest.mark.e2e

ANN = "ann@example.test"
BOB = "bob@example.test"


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _updates(page: Page, state: str) -> None:
    """The header's live indicator says how updates arrive (its tooltip)."""
    expect(page.get_by_title(f"Updates: {state}")).to_be_attached()


def test_new_mail_arrives_by_long_polling_when_the_websocket_is_unreachable(
    page: Page, platform: Platform
) -> None:
    # Every connection to realtime is refused before it opens, as when the service is down.
    page.route_web_socket(re.compile(rf":{platform.realtime_port}/"), lambda ws: ws.close())
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/api/v1/events?" in r.url else None)
    sign_in(page, ANN)
    _updates(page, "polling")
    page.evaluate("window.__sameDocument = true")

    subject = f"Polled in {_tag()}"
    send_over_smtp(platform.smtp(), ANN, subject, "Arrived by long polling.\n")
    expect(row(page, subject)).to_be_visible()
    expect(row(page, subject)).to_have_attribute("data-unread", "true")
    assert polls, "no long poll was made"
    _updates(page, "polling")
    assert page.evaluate("window.__sameDocument") is True


def test_mail_missed_while_offline_appears_after_reconnecting(
    page: Page, platform: Platform
) -> None:
    sign_in(page, BOB)
    _updates(page, "live")
    page.evaluate("window.__sameDocument = true")
    subject = f"Sent while you were offline {_tag()}"

    page.context.set_offline(True)
    send_over_smtp(platform.smtp(), BOB, subject, "Catch up on this.\n")
    platform.wait_for(platform.token(BOB), "inbox", subject)
    # Stored on the server, but the page cannot hear of it yet.
    page.wait_for_timeout(1000)
    expect(row(page, subject)).to_have_count(0)

    page.context.set_offline(False)
    expect(row(page, subject)).to_be_visible()
    _updates(page, "live")
    assert page.evaluate("window.__sameDocument") is True
