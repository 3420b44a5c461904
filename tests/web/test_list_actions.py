"""The message list as a user works it (issue 8, point 2): infinite scroll past the first API
page, unread rows in bold, stars that survive a reload, and bulk actions on checked rows.
"""

from __future__ import annotations

import smtplib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Page, expect

from tests.support.platform import Platform
from tests.web.ui import grid, mailbox_link, remote_message, row, send_over_smtp, sign_in

pytestmark = pytest.mark.e2e

ANN = "ann@example.test"
BOB = "bob@example.test"
# More than the app's first page (100 rows): the rest only come with scrolling.
SEEDED = 110
SEED_CONNECTIONS = 4


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _seed(smtp: smtplib.SMTP, recipient: str, subjects: list[str]) -> None:
    """Many messages over one SMTP session, as a busy remote server would deliver them."""
    with smtp as client:
        for subject in subjects:
            raw = remote_message([recipient], subject, f"Body of {subject}.\n")
            client.sendmail("zed@remote.test", [recipient], raw)


def _wait_for_count(platform: Platform, token: str, prefix: str, count: int) -> list[str]:
    """The subjects starting with ``prefix`` once ``count`` have arrived, newest first."""
    deadline = time.monotonic() + 90
    found: list[str] = []
    while time.monotonic() < deadline:
        listed = platform.messages(token, "inbox")
        found = [m["subject"] for m in listed if m["subject"].startswith(prefix)]
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"only {len(found)} of {count} seeded messages arrived")


def test_scrolling_to_the_bottom_loads_the_rows_past_the_first_page(
    page: Page, platform: Platform
) -> None:
    prefix = f"Bulk {_tag()}"
    subjects = [f"{prefix} {n:03d}" for n in range(SEEDED)]
    # A few connections at once, as busy remote servers deliver: each message waits for its
    # own durable write, so one connection alone would take several seconds.
    with ThreadPoolExecutor(SEED_CONNECTIONS) as pool:
        batches = [subjects[n::SEED_CONNECTIONS] for n in range(SEED_CONNECTIONS)]
        list(pool.map(lambda batch: _seed(platform.smtp(), BOB, batch), batches))
    # Newest first, as the list shows them (the connections interleave).
    arrived = _wait_for_count(platform, platform.token(BOB), prefix, SEEDED)
    sign_in(page, BOB)
    expect(row(page, arrived[0])).to_be_visible()
    oldest = row(page, arrived[-1])
    # Scroll the grid down until the oldest (past the first page, newest first) shows up.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and oldest.count() == 0:
        grid(page).evaluate("grid => { grid.scrollTop = grid.scrollHeight; }")
        page.wait_for_timeout(200)
    expect(oldest).to_be_visible()
    expect(oldest).to_contain_text("Zed Remote")
    # Every seeded message is reachable: the grid knows them all now (no "more" marker).
    expect(grid(page)).to_have_attribute("aria-rowcount", str(SEEDED))


def test_unread_rows_are_bold_and_read_rows_are_not(page: Page, platform: Platform) -> None:
    tag = _tag()
    unread, read = f"Unread one {tag}", f"Read one {tag}"
    for subject in (unread, read):
        send_over_smtp(platform.smtp(), ANN, subject, "Hello.\n")
    token = platform.token(ANN)
    (item,) = platform.wait_for(token, "inbox", read)
    platform.wait_for(token, "inbox", unread)
    with platform.api(token) as api:
        answer = api.post(
            "/messages/bulk", json={"ids": [item["id"]], "action": "flags", "seen": True}
        )
    assert answer.status_code < 300, answer.text
    sign_in(page, ANN)
    weight = (
        "row => Number(getComputedStyle(row.querySelector('[data-testid=row-subject]')).fontWeight)"
    )
    expect(row(page, unread)).to_have_attribute("data-unread", "true")
    expect(row(page, read)).to_have_attribute("data-unread", "false")
    assert row(page, unread).evaluate(weight) >= 600
    assert row(page, read).evaluate(weight) < 600


def test_a_star_stays_after_a_reload(page: Page, platform: Platform) -> None:
    subject = f"Keep this {_tag()}"
    send_over_smtp(platform.smtp(), ANN, subject, "Star me.\n")
    platform.wait_for(platform.token(ANN), "inbox", subject)
    sign_in(page, ANN)
    star = row(page, subject).get_by_role("button", name="Star")
    expect(star).to_have_attribute("aria-pressed", "false")
    with page.expect_response(lambda r: "/messages/bulk" in r.url and r.ok):
        star.click()
    expect(star).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(row(page, subject).get_by_role("button", name="Star")).to_have_attribute(
        "aria-pressed", "true"
    )


def _select(page: Page, *subjects: str) -> None:
    for subject in subjects:
        row(page, subject).get_by_role("checkbox", name="Select").check()


def test_bulk_mark_read_move_and_delete(page: Page, platform: Platform) -> None:
    tag = _tag()
    read = [f"Read pair {tag} {n}" for n in (1, 2)]
    moved = [f"Move pair {tag} {n}" for n in (1, 2)]
    deleted = [f"Delete pair {tag} {n}" for n in (1, 2)]
    token = platform.token(ANN)
    for subject in (*read, *moved, *deleted):
        send_over_smtp(platform.smtp(), ANN, subject, "One of a pair.\n")
    for subject in (*read, *moved, *deleted):
        platform.wait_for(token, "inbox", subject)
    sign_in(page, ANN)
    toolbar = page.get_by_role("toolbar", name="Selected messages")

    # Mark read: both rows lose data-unread, and keep it lost after a reload.
    for subject in read:
        expect(row(page, subject)).to_have_attribute("data-unread", "true")
    _select(page, *read)
    with page.expect_response(lambda r: "/messages/bulk" in r.url and r.ok):
        toolbar.get_by_role("button", name="Mark read").click()
    for subject in read:
        expect(row(page, subject)).to_have_attribute("data-unread", "false")
    page.reload()
    for subject in read:
        expect(row(page, subject)).to_have_attribute("data-unread", "false")

    # Move to Archive: gone from the Inbox, listed in Archive.
    _select(page, *moved)
    toolbar.get_by_role("button", name="Move to").click()
    with page.expect_response(lambda r: "/messages/bulk" in r.url and r.ok):
        page.get_by_role("menuitem", name="Archive").click()
    for subject in moved:
        expect(row(page, subject)).to_have_count(0)

    # Delete: gone from the Inbox, listed in Trash.
    _select(page, *deleted)
    with page.expect_response(lambda r: "/messages/bulk" in r.url and r.ok):
        toolbar.get_by_role("button", name="Delete").click()
    for subject in deleted:
        expect(row(page, subject)).to_have_count(0)

    page.reload()
    for subject in (*moved, *deleted):
        expect(row(page, subject)).to_have_count(0)
    expect(row(page, read[0])).to_be_visible()
    mailbox_link(page, "Archive").click()
    for subject in moved:
        expect(row(page, subject)).to_be_visible()
    mailbox_link(page, "Trash").click()
    for subject in deleted:
        expect(row(page, subject)).to_be_visible()
