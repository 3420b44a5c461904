"""Drafts: kept in the Drafts mailbox, edited in place, and moved out by sending."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.gateway_api import Api, Client, api_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("drafts"))) as api:
        yield api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ann(api: Api) -> Client:
    return await api.user("ann@drafts.test")


async def _listed(client: Client, mailbox: str) -> list[dict[str, Any]]:
    answer = await client.get("/messages", params={"mailbox": mailbox, "limit": 100})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def test_write_edit_and_send_a_draft(ann: Client) -> None:
    created = await ann.post("/drafts", json={"subject": "Half a thought"})
    assert created.status_code == 201, created.text
    draft = created.json()
    assert [m["id"] for m in await _listed(ann, "drafts")] == [draft["message_id"]]

    not_ready = await ann.post(f"/drafts/{draft['id']}/send")
    assert not_ready.status_code == 422
    assert not_ready.json()["error"]["field"] == "to"

    attachment = {"filename": "plan.txt", "content": base64.b64encode(b"step 1").decode()}
    updated = await ann.request(
        "PUT",
        f"/drafts/{draft['id']}",
        json={
            "to": ["zed@remote.test"],
            "bcc": ["quiet@remote.test"],
            "subject": "The plan",
            "text": "See attached.",
            "attachments": [attachment],
        },
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == draft["id"]
    in_drafts = await _listed(ann, "drafts")
    assert [(m["id"], m["subject"]) for m in in_drafts] == [
        (updated.json()["message_id"], "The plan")
    ]
    assert (await ann.get(f"/drafts/{draft['id']}")).json()["draft"]["bcc"] == ["quiet@remote.test"]

    sent = await ann.post(f"/drafts/{draft['id']}/send")
    assert sent.status_code == 202, sent.text
    assert await _listed(ann, "drafts") == []
    assert (await ann.get(f"/drafts/{draft['id']}")).status_code == 404
    copy = (await ann.get(f"/messages/{sent.json()['message_id']}")).json()
    assert (copy["subject"], copy["bcc"]) == ("The plan", ["quiet@remote.test"])
    assert [a["filename"] for a in copy["attachments"]] == ["plan.txt"]
    status = (await ann.get(f"/send/{sent.json()['id']}")).json()
    assert sorted(r["address"] for r in status["recipients"]) == [
        "quiet@remote.test",
        "zed@remote.test",
    ]
    assert (await ann.post(f"/drafts/{draft['id']}/send")).status_code == 404


async def test_delete_a_draft(ann: Client) -> None:
    draft = (await ann.post("/drafts", json={"to": ["a@remote.test"], "text": "x"})).json()
    listed = (await ann.get("/drafts")).json()["items"]
    assert draft["id"] in [d["id"] for d in listed]
    assert (await ann.request("DELETE", f"/drafts/{draft['id']}")).status_code == 204
    assert draft["message_id"] not in [m["id"] for m in await _listed(ann, "drafts")]
    assert (await ann.request("DELETE", f"/drafts/{draft['id']}")).status_code == 404


async def test_a_draft_is_validated_like_a_send(ann: Client) -> None:
    bad = await ann.post("/drafts", json={"to": ["not an address"]})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "to[0]"
    assert await _listed(ann, "drafts") == []


async def test_another_users_draft_is_not_found(api: Api, ann: Client) -> None:
    draft = (await ann.post("/drafts", json={"subject": "mine"})).json()
    bob = await api.user("bob@drafts.test")
    for method, url in [
        ("GET", f"/drafts/{draft['id']}"),
        ("PUT", f"/drafts/{draft['id']}"),
        ("DELETE", f"/drafts/{draft['id']}"),
        ("POST", f"/drafts/{draft['id']}/send"),
    ]:
        answer = await bob.request(method, url, json={"subject": "theirs"})
        assert answer.status_code == 404, (method, url)
    assert (await ann.get(f"/drafts/{draft['id']}")).json()["draft"]["subject"] == "mine"
