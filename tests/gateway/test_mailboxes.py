"""Mailboxes: counts, user folders created, renamed and deleted; special ones stay put."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.gateway_api import Api, Client, api_for, compose

pytestmark = pytest.mark.asyncio(loop_scope="module")

SPECIAL = ["inbox", "sent", "drafts", "trash", "junk", "archive"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("mailboxes"))) as api:
        yield api


async def _boxes(client: Client) -> dict[str, dict[str, Any]]:
    answer = await client.get("/mailboxes")
    assert answer.status_code == 200
    return {m["role"] or m["name"]: m for m in answer.json()["items"]}


async def test_list_counts_total_and_unread(api: Api) -> None:
    ann = await api.user("ann@boxes.test")
    for n in range(3):
        await api.deliver(ann.user, compose(f"m{n}"))
    boxes = await _boxes(ann)
    assert list(boxes) == SPECIAL
    assert (boxes["inbox"]["total"], boxes["inbox"]["unread"]) == (3, 3)
    assert (boxes["sent"]["total"], boxes["sent"]["unread"]) == (0, 0)
    listed = (await ann.get("/messages")).json()["items"]
    assert (
        await ann.request("PATCH", f"/messages/{listed[0]['id']}", json={"seen": True})
    ).is_success
    boxes = await _boxes(ann)
    assert (boxes["inbox"]["total"], boxes["inbox"]["unread"]) == (3, 2)
    one = await ann.get(f"/mailboxes/{boxes['inbox']['id']}")
    assert one.json() == boxes["inbox"]


async def test_create_rename_and_delete_a_folder(api: Api) -> None:
    bob = await api.user("bob@boxes.test")
    created = await bob.post("/mailboxes", json={"name": "  Receipts "})
    assert created.status_code == 201
    folder = created.json()
    assert (folder["name"], folder["role"], folder["total"], folder["unread"]) == (
        "Receipts",
        None,
        0,
        0,
    )
    renamed = await bob.request("PATCH", f"/mailboxes/{folder['id']}", json={"name": "Bills"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Bills"
    assert "Bills" in await _boxes(bob)

    message = await api.deliver(bob.user, compose("invoice"), mailbox=folder["id"])
    deleted = await bob.request("DELETE", f"/mailboxes/{folder['id']}")
    assert deleted.status_code == 204
    boxes = await _boxes(bob)
    assert "Bills" not in boxes
    assert boxes["trash"]["total"] == 1
    moved = await bob.get(f"/messages/{message.id}")
    assert moved.json()["mailbox_id"] == boxes["trash"]["id"]
    assert (await bob.get(f"/mailboxes/{folder['id']}")).status_code == 404


async def test_names_must_be_unique_and_never_a_role(api: Api) -> None:
    cat = await api.user("cat@boxes.test")
    assert (await cat.post("/mailboxes", json={"name": "Work"})).status_code == 201
    for name in ["Work", "work", "Inbox", "trash", "ARCHIVE"]:
        answer = await cat.post("/mailboxes", json={"name": name})
        assert answer.status_code == 409, name
        assert answer.json()["error"]["code"] == "conflict"
    for bad in ["", "   ", "a\nb", "x" * 256]:
        answer = await cat.post("/mailboxes", json={"name": bad})
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["field"] == "name"
    assert [n for n in await _boxes(cat) if n not in SPECIAL] == ["Work"]


async def test_special_mailboxes_cannot_be_renamed_or_deleted(api: Api) -> None:
    dan = await api.user("dan@boxes.test")
    await api.deliver(dan.user, compose("keep me"))
    before = await _boxes(dan)
    for role in SPECIAL:
        box = before[role]
        deleted = await dan.request("DELETE", f"/mailboxes/{box['id']}")
        assert deleted.status_code == 422, role
        assert "special mailbox" in deleted.json()["error"]["message"]
        renamed = await dan.request("PATCH", f"/mailboxes/{box['id']}", json={"name": "Other"})
        assert renamed.status_code == 422, role
    assert await _boxes(dan) == before
