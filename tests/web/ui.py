"""How the tests find their way around the UI: only the names of the DOM contract.

Every locator here uses the accessible names and test ids that web/ promises (the DOM contract
the app and these tests share), so a test reads like what a user does, and a renamed button
fails loudly here.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import smtplib
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.support.platform import PASSWORD

__all__ = [
    "SCREENSHOTS",
    "compose",
    "grid",
    "mailbox_link",
    "mean_brightness",
    "remote_message",
    "row",
    "screenshot",
    "send_over_smtp",
    "sign_in",
]

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def sign_in(page: Page, address: str, password: str = PASSWORD) -> None:
    page.goto("/")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(grid(page)).to_be_visible()


def mailbox_link(page: Page, name: str) -> Locator:
    """The nav link of a mailbox; its accessible name starts with the mailbox name."""
    navigation = page.get_by_role("navigation", name="Mailboxes")
    return navigation.get_by_role("link", name=re.compile(rf"^{re.escape(name)}\b"))


def grid(page: Page) -> Locator:
    return page.get_by_role("grid", name="Messages")


def row(page: Page, subject: str) -> Locator:
    """The message row whose subject is exactly ``subject``."""
    rows = grid(page).get_by_test_id("message-row")
    return rows.filter(
        has=page.get_by_test_id("row-subject").filter(
            has_text=re.compile(rf"^\s*{re.escape(subject)}\s*$")
        )
    )


def compose(page: Page) -> Locator:
    return page.get_by_role("dialog", name="Compose")


def screenshot(page: Page, name: str, docs: str | None = None) -> bytes:
    """Saves ``tests/web/screenshots/NAME.png`` (gitignored). With ``docs``, also refreshes
    ``docs/screenshot-DOCS.png``, the committed copy the README shows, but only when
    ``POSTROOM_UPDATE_DOCS_SCREENSHOTS=1``: an ordinary run must not change committed files.
    """
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    png = page.screenshot(path=path)
    if docs and os.environ.get("POSTROOM_UPDATE_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / f"screenshot-{docs}.png")
    return png


def remote_message(
    recipients: list[str],
    subject: str,
    text: str,
    html: str | None = None,
    sender: str = "zed@remote.test",
    sender_name: str = "Zed Remote",
) -> bytes:
    """The bytes of a message from a remote sender to ``recipients`` (all in To)."""
    message = EmailMessage()
    message["From"] = f"{sender_name} <{sender}>"
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes(policy=SMTP)


def send_over_smtp(
    smtp: smtplib.SMTP,
    recipient: str,
    subject: str,
    text: str,
    html: str | None = None,
    sender: str = "zed@remote.test",
    sender_name: str = "Zed Remote",
    also: tuple[str, ...] = (),
) -> None:
    """A message from a remote sender to the MX port, as another mail server would send it;
    ``also`` adds recipients (in To, and in the same SMTP transaction).
    """
    recipients = [recipient, *also]
    raw = remote_message(recipients, subject, text, html, sender, sender_name)
    with smtp as client:
        client.sendmail(sender, recipients, raw)


def mean_brightness(page: Page, png: bytes) -> float:
    """The mean brightness (0 black .. 1 white) of a screenshot, as the user sees it: decoded
    and averaged by the browser itself (a canvas), whatever CSS color syntax the app used.
    """
    return float(
        page.evaluate(
            """async (b64) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
                const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
                const context = canvas.getContext("2d");
                context.drawImage(bitmap, 0, 0);
                const pixels = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
                let sum = 0;
                for (let i = 0; i < pixels.length; i += 4) {
                    sum += 0.2126 * pixels[i] + 0.7152 * pixels[i + 1] + 0.0722 * pixels[i + 2];
                }
                return sum / (pixels.length / 4) / 255;
            }""",
            base64.b64encode(png).decode(),
        )
    )
