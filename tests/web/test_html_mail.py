"""Hostile HTML mail shows as text and pictures only: no script runs, nothing remote loads
until the user asks (issue 8, point 8).

The "remote" server is a local HTTP server (``canary.py``) that logs every request. The mail's
scripts would call it and set markers in the page; its images, stylesheet and frame point at
it. Opening the mail must leave its log empty and the markers unset. Clicking "Show images"
then makes the browser fetch the image from it, which proves the browser could reach it all
along, so the empty log was not luck.
"""

from __future__ import annotations

import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.support.platform import Platform
from tests.web.canary import Canary
from tests.web.ui import row, screenshot, send_over_smtp, sign_in

pytestmark = pytest.mark.e2e

ANN = "ann@example.test"
# Requests that only a script (or an event handler, or a followed javascript: link) would make.
SCRIPTED = ("/script-fetch", "/script-image.png", "/onload", "/onerror", "/svg-script", "/js")


def _hostile_html(remote: str) -> str:
    return f"""<!doctype html>
<html><head>
<link rel="stylesheet" href="{remote}/style.css">
<script>
  fetch("{remote}/script-fetch");
  new Image().src = "{remote}/script-image.png";
  try {{ top.__pwned = true; }} catch (e) {{}}
  try {{ top.document.title = "pwned"; }} catch (e) {{}}
</script>
</head>
<body onload="fetch('{remote}/onload')">
<p>Hello from the newsletter team.</p>
<img src="{remote}/remote-image.png" alt="Our logo" width="40" height="40">
<img src="missing.png" onerror="fetch('{remote}/onerror')">
<div style="background-image: url('{remote}/background.png')">Styled block.</div>
<a href="javascript:fetch('{remote}/js')">Read more</a>
<iframe src="{remote}/frame"></iframe>
<svg><script>fetch("{remote}/svg-script")</script></svg>
</body></html>
"""


def _wait_for_path(canary: Canary, path: str, timeout: float = 15) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path in canary.seen():
            return canary.seen()
        time.sleep(0.1)
    return canary.seen()


def test_script_does_not_run_and_remote_image_waits_for_show_images(
    page: Page, platform: Platform, canary: Canary
) -> None:
    subject = f"Newsletter {uuid.uuid4().hex[:8]}"
    send_over_smtp(
        platform.smtp(),
        ANN,
        subject,
        "Hello from the newsletter team (text part).\n",
        html=_hostile_html(canary.url),
    )
    sign_in(page, ANN)
    row(page, subject).click()

    body = page.locator('iframe[title="Message body"]')
    expect(body).to_be_visible()
    sandbox = body.get_attribute("sandbox")
    assert sandbox is not None, "the message body iframe must be sandboxed"
    assert "allow-scripts" not in sandbox.split()
    expect(
        page.frame_locator('iframe[title="Message body"]').get_by_text(
            "Hello from the newsletter team."
        )
    ).to_be_visible()
    show_images = page.get_by_role("button", name="Show images")
    expect(show_images).to_be_visible()
    screenshot(page, "html-mail-images-blocked")
    page.wait_for_load_state("networkidle")
    # Negative evidence needs time to be wrong in: give a stray request a moment to arrive.
    page.wait_for_timeout(1500)
    assert canary.seen() == []
    assert page.evaluate("window.__pwned") is None
    assert "pwned" not in page.title()

    show_images.click()
    seen = _wait_for_path(canary, "/remote-image.png")
    assert "/remote-image.png" in seen, f"the browser never fetched the image; saw {seen}"
    page.wait_for_timeout(1000)
    scripted = [path for path in canary.seen() if path in SCRIPTED]
    assert scripted == [], f"a script of the mail ran after Show images: {scripted}"
    assert page.evaluate("window.__pwned") is None
    assert "pwned" not in page.title()
