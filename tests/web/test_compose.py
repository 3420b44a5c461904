"""Writing mail in the browser (issue 8, point 4): recipients suggested from past
correspondents, drafts saved on their own, send with a few seconds to undo, the API's errors
next to their field, and the original quoted in a reply all and a forward.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support.platform import Platform
from tests.web.ui import compose, mailbox_link, row, send_over_smtp, sign_in

pytestmark = pytest.mark.e2e

ANN = "ann@example.test"
BOB = "bob@example.test"


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _status(page: Page, text: str) -> Locator:
    return page.get_by_role("status").filter(has_text=re.compile(rf"\b{re.escape(text)}"))


def _subjects(platform: Platform, address: str, mailbox: str) -> list[str]:
    return [m["subject"] for m in platform.messages(platform.token(address), mailbox)]


def test_to_suggests_a_past_correspondent_and_picking_fills_the_field(
    page: Page, platform: Platform
) -> None:
    tag = _tag()
    address = f"quentin.{tag}@remote.test"
    subject = f"Hello from Quentin {tag}"
    send_over_smtp(
        platform.smtp(), ANN, subject, "Hi.\n", sender=address, sender_name="Quentin Marsh"
    )
    platform.wait_for(platform.token(ANN), "inbox", subject)
    sign_in(page, ANN)
    page.get_by_role("button", name="Compose").click()
    to = compose(page).get_by_label("To", exact=True)
    to.press_sequentially(f"quentin.{tag[:4]}")
    suggestion = compose(page).get_by_role("option", name=re.compile(re.escape(address)))
    expect(suggestion).to_be_visible()
    expect(suggestion).to_contain_text("Quentin Marsh")
    suggestion.click()
    expect(to).to_have_value(re.compile(rf"Quentin Marsh <{re.escape(address)}>"))
    expect(compose(page).get_by_role("option")).to_have_count(0)


def test_a_draft_is_saved_on_its_own_and_listed_in_drafts(page: Page, platform: Platform) -> None:
    subject = f"Unfinished thoughts {_tag()}"
    sign_in(page, ANN)
    page.get_by_role("button", name="Compose").click()
    dialog = compose(page)
    dialog.get_by_label("To", exact=True).fill(BOB)
    dialog.get_by_label("Subject").fill(subject)
    dialog.get_by_label("Body").fill("To be continued.")
    # No button pressed: the save happens a moment after the typing stops.
    expect(dialog.get_by_role("status")).to_have_text("Draft saved")
    mailbox_link(page, "Drafts").click()
    expect(row(page, subject)).to_be_visible()
    assert subject in _subjects(platform, ANN, "drafts")


def test_undo_stops_the_send(page: Page, platform: Platform) -> None:
    tag = _tag()
    undone, fence = f"Do not send {tag}", f"Sent after the undo {tag}"
    sign_in(page, ANN)
    # The status line after Send: "Sending…" with Undo, for the undo window.
    undo = page.get_by_role("status").get_by_role("button", name="Undo")

    def send(subject: str) -> None:
        page.get_by_role("button", name="Compose").click()
        dialog = compose(page)
        dialog.get_by_label("To", exact=True).fill(BOB)
        dialog.get_by_label("Subject").fill(subject)
        dialog.get_by_label("Body").fill("Second thoughts.")
        dialog.get_by_role("button", name="Send", exact=True).click()
        expect(undo).to_be_visible()
        undo_button = page.get_by_role("button", name="Undo")
        expect(_status(page, "Sending…").filter(has=undo_button)).to_be_visible()

    send(undone)
    undo.click()
    expect(_status(page, "Sending undone")).to_be_visible()
    # The message comes back to the compose dialog, unsent.
    expect(compose(page).get_by_label("Subject")).to_have_value(undone)
    compose(page).get_by_role("button", name="Discard").click()
    expect(compose(page)).to_have_count(0)

    # A second send, made later with the same undo window, is due after the first would have
    # been: once it has arrived, the undone one would have too.
    send(fence)
    platform.wait_for(platform.token(BOB), "inbox", fence, timeout=60)
    assert undone not in _subjects(platform, BOB, "inbox")
    assert undone not in _subjects(platform, ANN, "sent")
    mailbox_link(page, "Sent").click()
    expect(row(page, fence)).to_be_visible()
    expect(row(page, undone)).to_have_count(0)


def test_an_invalid_address_is_named_next_to_to_and_nothing_is_sent(
    page: Page, platform: Platform
) -> None:
    subject = f"Bad address {_tag()}"
    sign_in(page, ANN)
    page.get_by_role("button", name="Compose").click()
    dialog = compose(page)
    to = dialog.get_by_label("To", exact=True)
    to.fill("bob at example")
    dialog.get_by_label("Subject").fill(subject)
    dialog.get_by_label("Body").fill("Will not go.")
    dialog.get_by_role("button", name="Send", exact=True).click()
    expect(to).to_have_attribute("aria-describedby", re.compile(r".+"))
    error_id = to.get_attribute("aria-describedby")
    alert = dialog.locator(f"[id='{error_id}']")
    expect(alert).to_have_attribute("role", "alert")
    expect(alert).to_contain_text("bob at example")
    expect(to).to_have_attribute("aria-invalid", "true")
    # Still in the dialog, nothing sent.
    expect(dialog).to_be_visible()
    expect(_status(page, "Sending…")).to_have_count(0)
    assert subject not in _subjects(platform, ANN, "sent")


def test_reply_all_quotes_the_original_and_forward_carries_it_with_its_header(
    page: Page, platform: Platform
) -> None:
    subject = f"Venue for the party {_tag()}"
    text = "The boathouse is free on Friday.\nThoughts?\n"
    send_over_smtp(platform.smtp(), ANN, subject, text, also=(BOB,))
    platform.wait_for(platform.token(ANN), "inbox", subject)
    sign_in(page, ANN)
    row(page, subject).click()
    expect(page.get_by_role("heading", name=subject)).to_be_visible()

    page.get_by_role("button", name="Reply all").first.click()
    dialog = compose(page)
    to = dialog.get_by_label("To", exact=True)
    expect(to).to_have_value(re.compile("zed@remote.test"))
    expect(to).to_have_value(re.compile(re.escape(BOB)))
    expect(to).not_to_have_value(re.compile(re.escape(ANN)))
    expect(dialog.get_by_label("Subject")).to_have_value(f"Re: {subject}")
    body = dialog.get_by_label("Body")
    expect(body).to_have_value(re.compile(r"Zed Remote.*wrote:", re.DOTALL))
    expect(body).to_have_value(re.compile(r"^> The boathouse is free on Friday\.$", re.MULTILINE))
    expect(body).to_have_value(re.compile(r"^> Thoughts\?$", re.MULTILINE))
    dialog.get_by_role("button", name="Discard").click()
    expect(dialog).to_have_count(0)

    page.get_by_role("button", name="Forward").first.click()
    expect(dialog.get_by_label("Subject")).to_have_value(f"Fwd: {subject}")
    expect(body).to_have_value(re.compile("Forwarded message"))
    forwarded = body.input_value()
    assert "---------- Forwarded message ----------" in forwarded
    assert "From: Zed Remote <zed@remote.test>" in forwarded
    assert f"Subject: {subject}" in forwarded
    assert "The boathouse is free on Friday." in forwarded
