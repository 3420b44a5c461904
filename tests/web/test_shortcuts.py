"""Keyboard use (issue 8, point 7): the shortcuts, each checked by what it does on screen, and
the sign-in form reachable by Tab in reading order.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support.platform import Platform
from tests.web.ui import compose, grid, mailbox_link, row, send_over_smtp, sign_in

pytestmark = pytest.mark.e2e

ANN = "ann@example.test"
BOB = "bob@example.test"


def _rows(page: Page) -> Locator:
    return grid(page).get_by_test_id("message-row")


def _seed(platform: Platform, address: str, count: int) -> list[str]:
    """``count`` messages, oldest first (the list shows them newest first)."""
    tag = uuid.uuid4().hex[:8]
    subjects = [f"Shortcut {tag} {n}" for n in range(count)]
    for subject in subjects:
        send_over_smtp(platform.smtp(), address, subject, f"Text of {subject}.\n")
    token = platform.token(address)
    for subject in subjects:
        platform.wait_for(token, "inbox", subject)
    return subjects


def _discard(page: Page) -> None:
    compose(page).get_by_role("button", name="Discard").click()
    expect(compose(page)).to_have_count(0)


def test_the_sign_in_form_is_reached_by_tab_in_order(page: Page) -> None:
    page.goto("/")
    email = page.get_by_label("Email")
    expect(email).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    expect(email).to_be_focused()


def test_j_k_move_the_cursor_and_o_enter_u_open_and_close(page: Page, platform: Platform) -> None:
    subjects = _seed(platform, ANN, 3)
    newest, middle, oldest = subjects[2], subjects[1], subjects[0]
    sign_in(page, ANN)
    expect(row(page, oldest)).to_be_visible()
    first = _rows(page).first
    expect(first).to_have_attribute("aria-selected", "true")
    expect(first.get_by_test_id("row-subject")).to_have_text(newest)

    page.keyboard.press("j")
    expect(row(page, middle)).to_have_attribute("aria-selected", "true")
    expect(row(page, newest)).to_have_attribute("aria-selected", "false")
    page.keyboard.press("j")
    expect(row(page, oldest)).to_have_attribute("aria-selected", "true")
    page.keyboard.press("k")
    expect(row(page, middle)).to_have_attribute("aria-selected", "true")
    expect(row(page, oldest)).to_have_attribute("aria-selected", "false")

    page.keyboard.press("o")
    expect(page.get_by_role("heading", name=middle)).to_be_visible()
    expect(page.get_by_role("article", name="Message")).to_contain_text(f"Text of {middle}.")
    page.keyboard.press("u")
    expect(page.get_by_role("article", name="Message")).to_have_count(0)

    page.keyboard.press("k")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=newest)).to_be_visible()


_PRESS_R_WHEN_SHOWN = """(subject) => {
  const observer = new MutationObserver(() => {
    const shown = [...document.querySelectorAll("h2")].some((h) => h.textContent === subject);
    if (!shown) return;
    observer.disconnect();
    document.body.dispatchEvent(new KeyboardEvent("keydown", { key: "r", bubbles: true }));
  });
  observer.observe(document.body, { childList: true, subtree: true, characterData: true });
}"""
"""Press r in the very moment the conversation's heading enters the page, before the browser has
painted it or run anything else: the fastest a user could be."""


def test_r_pressed_the_moment_a_message_shows_replies_to_it(page: Page, platform: Platform) -> None:
    (subject,) = _seed(platform, BOB, 1)
    sign_in(page, BOB)
    page.evaluate(_PRESS_R_WHEN_SHOWN, subject)
    row(page, subject).click()
    expect(compose(page).get_by_label("Subject")).to_have_value(f"Re: {subject}")


def test_r_a_f_c_open_compose_as_reply_reply_all_forward_and_new(
    page: Page, platform: Platform
) -> None:
    (subject,) = _seed(platform, BOB, 1)
    sign_in(page, BOB)
    row(page, subject).click()
    expect(page.get_by_role("heading", name=subject)).to_be_visible()

    page.keyboard.press("r")
    expect(compose(page).get_by_label("Subject")).to_have_value(f"Re: {subject}")
    expect(compose(page).get_by_label("To", exact=True)).to_have_value(
        re.compile("zed@remote.test")
    )
    _discard(page)

    page.keyboard.press("a")
    expect(compose(page).get_by_label("Subject")).to_have_value(f"Re: {subject}")
    expect(compose(page).get_by_label("Body")).to_have_value(re.compile(r"wrote:\n> Text of"))
    _discard(page)

    page.keyboard.press("f")
    expect(compose(page).get_by_label("Subject")).to_have_value(f"Fwd: {subject}")
    expect(compose(page).get_by_label("To", exact=True)).to_have_value("")
    expect(compose(page).get_by_label("Body")).to_have_value(re.compile("Forwarded message"))
    _discard(page)

    page.keyboard.press("c")
    expect(compose(page)).to_be_visible()
    expect(compose(page).get_by_label("Subject")).to_have_value("")
    expect(compose(page).get_by_label("Body")).to_have_value("")
    # Typing in the dialog is typing, not shortcuts: no second dialog, no archive.
    compose(page).get_by_label("Subject").press_sequentially("ce#")
    expect(compose(page).get_by_label("Subject")).to_have_value("ce#")
    expect(compose(page)).to_have_count(1)
    _discard(page)


def test_e_archives_and_hash_deletes_the_message_under_the_cursor(
    page: Page, platform: Platform
) -> None:
    archived, deleted = _seed(platform, BOB, 2)
    sign_in(page, BOB)
    expect(row(page, archived)).to_be_visible()
    row(page, deleted).click()  # open the newest: the actions apply to the open message
    expect(page.get_by_role("heading", name=deleted)).to_be_visible()
    page.keyboard.press("#")
    expect(row(page, deleted)).to_have_count(0)

    page.keyboard.press("u")
    expect(page.get_by_role("article", name="Message")).to_have_count(0)
    row(page, archived).click()
    expect(page.get_by_role("heading", name=archived)).to_be_visible()
    page.keyboard.press("e")
    expect(row(page, archived)).to_have_count(0)

    mailbox_link(page, "Archive").click()
    expect(row(page, archived)).to_be_visible()
    mailbox_link(page, "Trash").click()
    expect(row(page, deleted)).to_be_visible()


def test_question_mark_opens_help_and_slash_focuses_search(page: Page) -> None:
    sign_in(page, ANN)
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_have_count(0)
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Reply all")
    page.keyboard.press("Escape")
    expect(help_dialog).to_have_count(0)

    search = page.get_by_role("searchbox", name="Search mail")
    expect(search).not_to_be_focused()
    page.keyboard.press("/")
    expect(search).to_be_focused()
    expect(search).to_have_value("")  # the "/" opened search, it was not typed into it
