"""Messages: listing with a cursor while mail arrives, reading, raw, flags, move, delete, bulk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.gateway_api import Api, Client, api_for, compose

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("messages"))) as api:
        yield api


async def _subjects(client: Client, mailbox: str = "inbox") -> list[str]:
    answer = await client.get("/messages", params={"mailbox": mailbox, "limit": 200})
    assert answer.status_code == 200
    return [m["subject"] for m in answer.json()["items"]]


async def _counts(client: Client) -> dict[str, tuple[int, int]]:
    items = (await client.get("/mailboxes")).json()["items"]
    return {m["role"] or m["name"]: (m["total"], m["unread"]) for m in items}


async def test_pages_stay_correct_while_mail_arrives(api: Api) -> None:
    ann = await api.user("ann@msgs.test")
    for n in range(5):
        await api.deliver(ann.user, compose(f"old {n}"))
    first = (await ann.get("/messages", params={"limit": 2})).json()
    assert [m["subject"] for m in first["items"]] == ["old 4", "old 3"]
    for n in range(3):  # arrivals between pages must not shift what comes next
        await api.deliver(ann.user, compose(f"new {n}"))
    seen = [m["subject"] for m in first["items"]]
    cursor = first["next_cursor"]
    while cursor is not None:
        page = (await ann.get("/messages", params={"limit": 2, "cursor": cursor})).json()
        seen += [m["subject"] for m in page["items"]]
        cursor = page["next_cursor"]
    assert seen == ["old 4", "old 3", "old 2", "old 1", "old 0"]
    assert await _subjects(ann) == ["new 2", "new 1", "new 0", *seen]
    bad = await ann.get("/messages", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "cursor"
    unknown = await ann.get("/messages", params={"mailbox": "nowhere"})
    assert unknown.status_code == 404


async def test_read_sanitises_html_and_blocks_remote_images_unless_asked(api: Api) -> None:
    bob = await api.user("bob@msgs.test")
    html = (
        '<p onclick="steal()">Hello <b>Bob</b></p><script>alert(1)</script>'
        '<img src="https://tracker.example/pixel.gif" alt="logo">'
        '<a href="javascript:alert(2)">click</a>'
    )
    message = await api.deliver(
        bob.user,
        compose(
            "newsletter",
            text="Hello Bob",
            html=html,
            attachments=[("report.pdf", "application/pdf", b"%PDF-1.4 fake")],
        ),
    )
    read = await bob.get(f"/messages/{message.id}")
    assert read.status_code == 200
    body = read.json()
    assert body["subject"] == "newsletter"
    assert body["from"] == {"name": "", "address": "zed@remote.test"}
    assert body["text"].strip() == "Hello Bob"
    assert body["message_id"] and body["message_id"].endswith("@remote.test>")
    assert "<b>Bob</b>" in body["html"]
    for gone in ("script", "onclick", "javascript:", "tracker.example"):
        assert gone not in body["html"], gone
    assert [(a["filename"], a["content_type"], a["size"]) for a in body["attachments"]] == [
        ("report.pdf", "application/pdf", len(b"%PDF-1.4 fake"))
    ]
    with_images = (await bob.get(f"/messages/{message.id}", params={"images": 1})).json()
    assert 'src="https://tracker.example/pixel.gif"' in with_images["html"]
    assert "script" not in with_images["html"]


async def test_raw_download_is_the_exact_stored_bytes(api: Api) -> None:
    cat = await api.user("cat@msgs.test")
    raw = compose("raw one", text="exact bytes")
    message = await api.deliver(cat.user, raw)
    answer = await cat.get(f"/messages/{message.id}/raw")
    assert answer.status_code == 200
    assert answer.content == raw
    assert answer.headers["content-type"] == "message/rfc822"
    assert answer.headers["content-disposition"] == 'attachment; filename="raw one.eml"'
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert message_from_bytes(answer.content)["Subject"] == "raw one"


async def test_flags_set_and_clear(api: Api) -> None:
    dan = await api.user("dan@msgs.test")
    message = await api.deliver(dan.user, compose("flag me"))
    answer = await dan.request(
        "PATCH", f"/messages/{message.id}", json={"seen": True, "flagged": True}
    )
    assert answer.status_code == 200
    item = answer.json()
    assert (item["seen"], item["flagged"], item["answered"]) == (True, True, False)
    answer = await dan.request("PATCH", f"/messages/{message.id}", json={"answered": True})
    item = answer.json()
    assert (item["seen"], item["flagged"], item["answered"]) == (True, True, True)
    await dan.request("PATCH", f"/messages/{message.id}", json={"seen": False, "flagged": False})
    item = (await dan.get(f"/messages/{message.id}")).json()
    assert (item["seen"], item["flagged"], item["answered"]) == (False, False, True)
    bad = await dan.request("PATCH", f"/messages/{message.id}", json={"seen": "maybe"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "seen"


async def test_move_then_delete_to_trash_then_for_good(api: Api) -> None:
    eve = await api.user("eve@msgs.test")
    message = await api.deliver(eve.user, compose("short-lived"))
    moved = await eve.post(f"/messages/{message.id}/move", json={"mailbox": "archive"})
    assert moved.status_code == 200
    assert await _subjects(eve, "archive") == ["short-lived"]
    assert await _subjects(eve) == []
    nowhere = await eve.post(f"/messages/{message.id}/move", json={"mailbox": "Nowhere"})
    assert nowhere.status_code == 404
    assert await _subjects(eve, "archive") == ["short-lived"]

    first = await eve.request("DELETE", f"/messages/{message.id}")
    assert first.json() == {"id": message.id, "outcome": "trashed"}
    assert await _subjects(eve, "trash") == ["short-lived"]
    second = await eve.request("DELETE", f"/messages/{message.id}")
    assert second.json() == {"id": message.id, "outcome": "deleted"}
    assert await _subjects(eve, "trash") == []
    assert (await eve.get(f"/messages/{message.id}")).status_code == 404
    assert (await eve.request("DELETE", f"/messages/{message.id}")).status_code == 404


async def test_bulk_flags_move_and_delete(api: Api) -> None:
    fay = await api.user("fay@msgs.test")
    ids = [(await api.deliver(fay.user, compose(f"bulk {n}"))).id for n in range(4)]

    async def bulk(**body: Any) -> dict[str, Any]:
        answer = await fay.post("/messages/bulk", json=body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    await bulk(ids=ids[:3], action="flags", seen=True, flagged=True)
    assert (await _counts(fay))["inbox"] == (4, 1)
    await bulk(ids=ids[:2], action="move", mailbox="archive")
    assert await _subjects(fay, "archive") == ["bulk 1", "bulk 0"]
    result = await bulk(ids=[*ids[:2], ids[0]], action="delete")
    assert (result["ids"], result["trashed"], result["deleted"]) == (ids[:2], ids[:2], [])
    result = await bulk(ids=[ids[0], ids[3]], action="delete")
    assert (result["trashed"], result["deleted"]) == ([ids[3]], [ids[0]])
    counts = await _counts(fay)
    assert (counts["inbox"], counts["archive"], counts["trash"]) == ((1, 0), (0, 0), (2, 1))


async def test_bulk_is_all_or_nothing_on_ownership(api: Api) -> None:
    gus = await api.user("gus@msgs.test")
    hal = await api.user("hal@msgs.test")
    mine = [(await api.deliver(gus.user, compose(f"gus {n}"))).id for n in range(2)]
    theirs = (await api.deliver(hal.user, compose("hal's"))).id
    before = await _counts(gus), await _counts(hal)
    for body in (
        {"action": "flags", "seen": True},
        {"action": "move", "mailbox": "archive"},
        {"action": "delete"},
    ):
        answer = await gus.post("/messages/bulk", json={"ids": [*mine, theirs], **body})
        assert answer.status_code == 404, body
        assert answer.json()["error"]["field"] == "ids[2]"
        missing = await gus.post("/messages/bulk", json={"ids": [*mine, "nope"], **body})
        assert missing.status_code == 404
    assert (await _counts(gus), await _counts(hal)) == before
    assert (await hal.get(f"/messages/{theirs}")).json()["seen"] is False
    empty = await gus.post("/messages/bulk", json={"ids": [], "action": "delete"})
    assert empty.status_code == 422
    no_flag = await gus.post("/messages/bulk", json={"ids": mine, "action": "flags"})
    assert no_flag.status_code == 422
