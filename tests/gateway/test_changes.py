"""The change feed: every change to mail and mailbox counts, in order, or 410 when too old."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from postroom.events import Event, user_channel
from storage.repositories.changes import prune_changes
from tests.support.gateway_api import Api, Client, api_for, compose
from tests.support.platform import Platform

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("changes"))) as api:
        yield api


async def _latest(client: Client) -> int:
    answer = await client.get("/changes")
    assert answer.status_code == 200
    assert answer.json()["items"] == []
    latest: int = answer.json()["latest"]
    return latest


async def _since(client: Client, since: int) -> list[tuple[str, dict[str, Any]]]:
    """(type, the one object of the payload) of each change after ``since``, checking seqs."""
    answer = await client.get("/changes", params={"since": since})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    seqs = [c["seq"] for c in body["items"]]
    assert seqs == list(range(since + 1, since + 1 + len(seqs)))
    assert body["latest"] == (seqs[-1] if seqs else since)
    return [(c["type"], next(iter(c["data"].values()))) for c in body["items"]]


def _counts(box: dict[str, Any]) -> tuple[str, int, int]:
    return box["role"] or box["name"], box["total"], box["unread"]


async def test_every_change_is_in_the_feed_with_mailbox_counts(api: Api) -> None:
    ann = await api.user("ann@changes.test")
    start = await _latest(ann)

    message = await api.deliver(ann.user, compose("first"))
    (new, new_body), (counts, box) = await _since(ann, start)
    assert (new, counts) == ("mail.new", "mailbox.counts")
    assert (new_body["id"], new_body["subject"], new_body["mailbox"]) == (
        message.id,
        "first",
        "inbox",
    )
    assert _counts(box) == ("inbox", 1, 1)
    after_new = start + 2

    await ann.request("PATCH", f"/messages/{message.id}", json={"seen": True, "flagged": True})
    changes = await _since(ann, after_new)
    assert [kind for kind, _ in changes] == ["mail.updated", "mailbox.counts"]
    assert {k: changes[0][1][k] for k in ("id", "seen", "flagged", "answered")} == {
        "id": message.id,
        "seen": True,
        "flagged": True,
        "answered": False,
    }
    assert _counts(changes[1][1]) == ("inbox", 1, 0)

    mark = await _latest(ann)
    await ann.request("PATCH", f"/messages/{message.id}", json={"flagged": True})
    assert await _since(ann, mark) == []  # nothing changed, nothing logged

    await ann.post(f"/messages/{message.id}/move", json={"mailbox": "archive"})
    changes = await _since(ann, mark)
    assert changes[0][0] == "mail.updated"
    assert (changes[0][1]["id"], changes[0][1]["mailbox"]) == (message.id, "archive")
    assert sorted(_counts(b) for _, b in changes[1:]) == [("archive", 1, 0), ("inbox", 0, 0)]

    mark = await _latest(ann)
    await ann.request("DELETE", f"/messages/{message.id}")
    await ann.request("DELETE", f"/messages/{message.id}")
    changes = await _since(ann, mark)
    kinds = [kind for kind, _ in changes]
    assert kinds == [
        "mail.updated",
        "mailbox.counts",
        "mailbox.counts",
        "mail.deleted",
        "mailbox.counts",
    ]
    assert changes[0][1]["mailbox"] == "trash"
    assert changes[3][1] == {
        "id": message.id,
        "mailbox": "trash",
        "mailbox_id": changes[4][1]["id"],
        "thread": message.thread_id,
    }
    assert _counts(changes[4][1]) == ("trash", 0, 0)


async def test_folders_and_bulk_changes_are_logged_and_failures_log_nothing(api: Api) -> None:
    bob = await api.user("bob@changes.test")
    ids = [(await api.deliver(bob.user, compose(f"b{n}"))).id for n in range(2)]
    mark = await _latest(bob)
    folder = (await bob.post("/mailboxes", json={"name": "Later"})).json()
    await bob.post("/messages/bulk", json={"ids": ids, "action": "move", "mailbox": "Later"})
    changes = await _since(bob, mark)
    assert [k for k, _ in changes] == [
        "mailbox.counts",
        "mail.updated",
        "mail.updated",
        "mailbox.counts",
        "mailbox.counts",
    ]
    assert _counts(changes[0][1]) == ("Later", 0, 0)
    assert sorted(_counts(b) for _, b in changes[3:]) == [("Later", 2, 2), ("inbox", 0, 0)]

    mark = await _latest(bob)
    refused = await bob.post("/messages/bulk", json={"ids": [*ids, "x"], "action": "delete"})
    assert refused.status_code == 404
    assert await _since(bob, mark) == []

    await bob.request("DELETE", f"/mailboxes/{folder['id']}")
    changes = await _since(bob, mark)
    assert changes[-1][0] == "mailbox.counts"
    assert changes[-1][1] == {**folder, "total": 0, "unread": 0, "deleted": True}
    assert ("trash", 2, 2) in [_counts(b) for k, b in changes if k == "mailbox.counts"]


async def test_changes_are_published_after_commit(api: Api) -> None:
    cat = await api.user("cat@changes.test")
    message = await api.deliver(cat.user, compose("watch"))
    received: list[Event] = []
    async with api.store.bus.subscribe(user_channel(cat.user.id)) as events:

        async def collect() -> None:
            async for event in events:
                received.append(event)
                if len(received) == 2:
                    return

        task = asyncio.create_task(collect())
        await asyncio.sleep(0.05)  # let the subscription start before the change
        await cat.request("PATCH", f"/messages/{message.id}", json={"seen": True})
        async with asyncio.timeout(5):
            await task
    assert [e.type for e in received] == ["mail.updated", "mailbox.counts"]
    feed = (await cat.get("/changes", params={"since": received[0].seq - 1})).json()["items"]
    assert [(c["seq"], c["type"], c["data"]) for c in feed] == [
        (e.seq, e.type, e.data) for e in received
    ]


async def test_since_too_old_or_unknown_is_410(api: Api) -> None:
    dan = await api.user("dan@changes.test")
    for n in range(3):
        await api.deliver(dan.user, compose(f"d{n}"))
    latest = await _latest(dan)
    assert len(await _since(dan, 0)) == latest == 6
    ahead = await dan.get("/changes", params={"since": latest + 1})
    assert ahead.status_code == 410
    assert ahead.json()["error"]["code"] == "resync"
    async with api.store.db.session() as session, session.begin():
        await prune_changes(session, dan.user.id, keep=2)
    gone = await dan.get("/changes", params={"since": 0})
    assert gone.status_code == 410
    assert "load your mail again" in gone.json()["error"]["message"]
    assert len(await _since(dan, latest - 2)) == 2
    negative = await dan.get("/changes", params={"since": -1})
    assert negative.status_code == 422
    paged = (await dan.get("/changes", params={"since": latest - 2, "limit": 1})).json()
    assert (len(paged["items"]), paged["more"], paged["latest"]) == (1, True, latest - 1)


@pytest.mark.e2e
async def test_mail_over_smtp_shows_up_in_the_feed_of_a_running_platform(
    platform: Platform,
) -> None:
    """End to end: the processor's filing and the API's flag change both reach the feed."""
    token = await asyncio.to_thread(platform.token, "ann@example.test")
    with platform.api(token) as http:
        start = http.get("/changes").json()["latest"]
    raw = compose("over smtp", to="ann@example.test")
    with platform.smtp() as smtp:
        smtp.sendmail("zed@remote.test", ["ann@example.test"], raw)
    (item,) = await asyncio.to_thread(platform.wait_for, token, "inbox", "over smtp")
    with platform.api(token) as http:
        assert http.patch(f"/messages/{item['id']}", json={"seen": True}).status_code == 200
        feed = http.get("/changes", params={"since": start}).json()["items"]
    kinds = [(c["type"], c["data"].get("message", c["data"].get("mailbox"))["id"]) for c in feed]
    inbox_id = item["mailbox_id"]
    assert kinds == [
        ("mail.new", item["id"]),
        ("mailbox.counts", inbox_id),
        ("mail.updated", item["id"]),
        ("mailbox.counts", inbox_id),
    ]
    assert feed[1]["data"]["mailbox"]["unread"] == feed[3]["data"]["mailbox"]["unread"] + 1
