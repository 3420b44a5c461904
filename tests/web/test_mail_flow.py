"""The web UI in a real chromium, as a user uses it (issue 8, point 8).

Sign in; mail sent over SMTP appears without a reload; open it, reply, find the reply in Sent;
search; an attachment goes up through the compose dialog and comes back down byte for byte;
the phone-size layout and dark mode. Each step saves a screenshot under
``tests/web/screenshots/``.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FilePayload, Page, expect

from tests.support.platform import Platform
from tests.web.ui import (
    compose,
    grid,
    mailbox_link,
    mean_brightness,
    row,
    screenshot,
    send_over_smtp,
    sign_in,
)

pytestmark = pytest.mark.e2e

ANN = "ann@example.test"
BOB = "bob@example.test"


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _unread(page: Page, mailbox: str) -> int:
    counts = mailbox_link(page, mailbox).get_by_test_id("unread-count")
    if counts.count() == 0:
        return 0
    text = counts.inner_text().strip()
    return int(text) if text else 0


def test_a_wrong_password_shows_the_apis_message(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_label("Email").fill(ANN)
    screenshot(page, "sign-in")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong address or password")
    expect(page.get_by_role("navigation", name="Mailboxes")).to_have_count(0)


def test_sign_in_survives_a_reload_and_sign_out_ends_it(page: Page) -> None:
    sign_in(page, ANN)
    page.reload()
    expect(grid(page)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(grid(page)).to_have_count(0)


def test_new_mail_appears_in_the_open_inbox_without_a_reload(
    page: Page, platform: Platform
) -> None:
    sign_in(page, ANN)
    inbox = mailbox_link(page, "Inbox")
    expect(inbox).to_have_attribute("aria-current", "page")
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        expect(mailbox_link(page, name)).to_be_visible()
    unread_before = _unread(page, "Inbox")
    # A reload or a new navigation would drop this; the same document must show the new mail.
    page.evaluate("window.__sameDocument = true")

    subject = f"Quarterly figures {_tag()}"
    send_over_smtp(platform.smtp(), ANN, subject, "The figures are attached.\n")

    arrived = row(page, subject)
    expect(arrived).to_be_visible(timeout=30_000)
    expect(arrived).to_have_attribute("data-unread", "true")
    expect(arrived).to_contain_text("Zed Remote")
    expect(arrived).to_contain_text("The figures are attached.")
    expect(arrived.get_by_role("checkbox", name="Select")).to_be_visible()
    expect(arrived.get_by_role("button", name="Star")).to_have_attribute("aria-pressed", "false")
    expect(inbox.get_by_test_id("unread-count")).to_have_text(str(unread_before + 1))
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "inbox")


def test_open_a_message_reply_and_find_the_reply_in_sent(page: Page, platform: Platform) -> None:
    subject = f"Agenda for Thursday {_tag()}"
    with platform.api(platform.token(BOB)) as api:
        response = api.post(
            "/send",
            json={
                "to": [ANN],
                "subject": subject,
                "text": "Draft agenda: https://example.org/agenda\nComments welcome.",
            },
        )
    assert response.status_code == 202, response.text
    sign_in(page, ANN)

    row(page, subject).click()
    message = page.get_by_role("article", name="Message")
    expect(message).to_have_count(1)
    expect(page.get_by_role("heading", name=subject)).to_be_visible()
    body = message.get_by_test_id("text-body")
    expect(body).to_contain_text("Comments welcome.")
    expect(body.get_by_role("link", name="https://example.org/agenda")).to_have_attribute(
        "href", "https://example.org/agenda"
    )
    for name in ("Reply all", "Forward", "Delete", "Archive"):
        expect(page.get_by_role("button", name=name, exact=True).first).to_be_visible()
    screenshot(page, "reading-pane")

    page.get_by_role("button", name="Reply", exact=True).first.click()
    dialog = compose(page)
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("To", exact=True)).to_have_value(re.compile(re.escape(BOB)))
    expect(dialog.get_by_label("Subject")).to_have_value(f"Re: {subject}")
    dialog.get_by_label("Body").fill("Thursday works for me.")
    screenshot(page, "compose")
    dialog.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_role("status").filter(has_text=re.compile(r"\bSent\b"))).to_be_visible()

    mailbox_link(page, "Sent").click()
    expect(mailbox_link(page, "Sent")).to_have_attribute("aria-current", "page")
    expect(row(page, f"Re: {subject}")).to_be_visible()
    # and it really went: Bob has it, threaded under his message
    (reply,) = platform.wait_for(platform.token(BOB), "inbox", f"Re: {subject}")
    assert reply["from"]["address"] == ANN


def test_search_finds_a_message_and_highlights_the_word(page: Page, platform: Platform) -> None:
    tag = _tag()
    word = f"kumquat{tag}"
    subject = f"Fruit order {tag}"
    send_over_smtp(platform.smtp(), ANN, subject, f"Please add a crate of {word} to the order.\n")
    sign_in(page, ANN)
    expect(row(page, subject)).to_be_visible(timeout=30_000)

    search = page.get_by_role("searchbox", name="Search mail")
    search.fill(word)
    search.press("Enter")
    found = row(page, subject)
    expect(found).to_be_visible()
    expect(grid(page).get_by_test_id("message-row")).to_have_count(1)
    expect(found.locator("mark").first).to_have_text(re.compile(word, re.IGNORECASE))
    screenshot(page, "search-results")


def test_an_attachment_goes_up_with_compose_and_comes_back_byte_for_byte(
    page: Page, tmp_path: Path
) -> None:
    subject = f"Scan of the contract {_tag()}"
    content = os.urandom(48_000) + bytes(range(256))
    sign_in(page, ANN)

    page.get_by_role("button", name="Compose").click()
    dialog = compose(page)
    dialog.get_by_label("To", exact=True).fill(ANN)
    dialog.get_by_label("Subject").fill(subject)
    dialog.get_by_label("Body").fill("The signed copy.")
    upload: FilePayload = {"name": "contract.pdf", "mimeType": "application/pdf", "buffer": content}
    dialog.get_by_label("Attach files").set_input_files(files=[upload])
    expect(dialog).to_contain_text("contract.pdf")
    dialog.get_by_role("button", name="Send", exact=True).click()
    expect(page.get_by_role("status").filter(has_text=re.compile(r"\bSent\b"))).to_be_visible()

    mailbox_link(page, "Inbox").click()
    row(page, subject).click()
    attachments = page.get_by_role("list", name="Attachments")
    link = attachments.get_by_role("link", name="contract.pdf")
    expect(link).to_be_visible()
    item = attachments.get_by_role("listitem").filter(
        has=page.get_by_role("link", name="contract.pdf")
    )
    expect(item).to_contain_text(re.compile(r"\d+(\.\d+)?\s*(B|bytes|KB|kB|KiB)\b"))
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "contract.pdf"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "contract.pdf"
    assert saved.read_bytes() == content


# A few ordinary messages, so the pictures (and the one in the README) look like a mailbox.
EVERYDAY = [
    (
        "Maria Rossi",
        "maria.rossi@remote.test",
        "Flights for the Lisbon offsite",
        "Hi Bob,\n\nthe flights are booked: we leave Tuesday at 9:40 from gate B12 and land at "
        "12:15. The hotel is a short walk from the venue.\n\nSee you at the airport,\nMaria\n",
    ),
    (
        "Jonas Berg",
        "jonas.berg@remote.test",
        "Invoice 2026-114 is paid",
        "Thanks, the payment arrived this morning. A receipt is on its way.\n",
    ),
    (
        "Grace Kim",
        "grace.kim@remote.test",
        "Notes from the design review",
        "Three things to follow up: the empty states, keyboard shortcuts, and dark mode.\n",
    ),
]


def test_phone_size_and_dark_mode(browser: Browser, base_url: str, platform: Platform) -> None:
    subject = f"Small screens {_tag()}"
    send_over_smtp(platform.smtp(), BOB, subject, "Seen on a phone.\n")
    for name, address, everyday, text in EVERYDAY:
        send_over_smtp(platform.smtp(), BOB, everyday, text, sender=address, sender_name=name)
    token = platform.token(BOB)
    for expected in (subject, *(everyday for _, _, everyday, _ in EVERYDAY)):
        platform.wait_for(token, "inbox", expected)

    phone = browser.new_context(
        base_url=base_url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = phone.new_page()
        sign_in(page, BOB)
        expect(row(page, subject)).to_be_visible()
        # everything fits the width: nothing to scroll sideways
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(page, "phone")
    finally:
        phone.close()

    brightness = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(
            base_url=base_url, viewport={"width": 1280, "height": 800}, color_scheme=scheme
        )
        try:
            page = context.new_page()
            sign_in(page, BOB)
            expect(row(page, subject)).to_be_visible()
            if scheme == "light":  # the picture the README shows: a message open
                row(page, EVERYDAY[0][2]).click()
                expect(page.get_by_role("article", name="Message")).to_contain_text("gate B12")
            png = screenshot(page, f"inbox-{scheme}", docs="inbox" if scheme == "light" else None)
            brightness[scheme] = mean_brightness(page, png)
        finally:
            context.close()
    assert brightness["light"] > 0.6, brightness
    assert brightness["dark"] < 0.35, brightness
