"""A listed page is served again only while nothing of its user changed: every change shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event

from gateway.routes.messages import message_item
from gateway.schemas import MessageList
from storage.repositories.mail import get_messages
from tests.support.gateway_api import Api, Client, api_for, compose

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("pages"))) as api:
        yield api


async def _inbox(client: Client, mailbox: str = "inbox") -> list[tuple[str, bool]]:
    answer = await client.get("/messages", params={"mailbox": mailbox, "limit": 10})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    return [(item["subject"], item["seen"]) for item in answer.json()["items"]]


async def test_a_repeated_list_shows_every_change_in_between(api: Api) -> None:
    ann = await api.user("ann@pages.test")
    first = await api.deliver(ann.user, compose("first"))
    assert await _inbox(ann) == [("first", False)]
    assert await _inbox(ann) == [("first", False)]  # served again: nothing changed

    await api.deliver(ann.user, compose("second"))
    assert await _inbox(ann) == [("second", False), ("first", False)]

    flagged = await ann.request("PATCH", f"/messages/{first.id}", json={"seen": True})
    assert flagged.status_code == 200, flagged.text
    assert await _inbox(ann) == [("second", False), ("first", True)]

    moved = await ann.post(f"/messages/{first.id}/move", json={"mailbox": "archive"})
    assert moved.status_code == 200, moved.text
    assert await _inbox(ann) == [("second", False)]
    assert await _inbox(ann, "archive") == [("first", True)]


async def test_another_users_change_does_not_leak_into_a_page(api: Api) -> None:
    bob = await api.user("bob@pages.test")
    cat = await api.user("cat@pages.test")
    await api.deliver(bob.user, compose("for bob", to="bob@pages.test"))
    assert await _inbox(cat) == []
    assert await _inbox(bob) == [("for bob", False)]
    await api.deliver(cat.user, compose("for cat", to="cat@pages.test"))
    assert await _inbox(cat) == [("for cat", False)]
    assert await _inbox(bob) == [("for bob", False)]


async def test_a_repeated_list_runs_no_statement_beyond_the_token_check(api: Api) -> None:
    """The token check reads the user's ``change_seq`` too: a page served again costs that
    one read, not a second one for the sequence number."""
    dan = await api.user("dan@pages.test")
    await api.deliver(dan.user, compose("once", to="dan@pages.test"))
    assert await _inbox(dan) == [("once", False)]
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = api.store.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        assert await _inbox(dan) == [("once", False)]
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert [s for s in statements if "auth_tokens" not in s] == []


async def test_with_the_token_cache_on_a_list_still_shows_every_change(
    database_url: str, tmp_path: Path
) -> None:
    """A remembered token brings no fresh ``change_seq``: the list reads it itself."""
    async with api_for(database_url, tmp_path, token_cache_seconds=30) as cached:
        eve = await cached.user("eve@pages.test")
        await cached.deliver(eve.user, compose("first", to="eve@pages.test"))
        assert await _inbox(eve) == [("first", False)]  # the token is remembered from here
        await cached.deliver(eve.user, compose("second", to="eve@pages.test"))
        assert await _inbox(eve) == [("second", False), ("first", False)]


async def test_a_page_is_exactly_the_documented_message_list(api: Api) -> None:
    """Rendered from rows, not models: still every field of ``MessageList``, valued as the
    model would give it (aliases, datetimes, flags), with a cursor that pages on."""
    fay = await api.user("fay@pages.test")
    raw = compose("with cc", to="fay@pages.test").replace(
        b"To: fay@pages.test", b"To: fay@pages.test\r\nCc: Gus <gus@remote.test>"
    )
    filed = [
        await api.deliver(fay.user, compose("plain", to="fay@pages.test")),
        await api.deliver(fay.user, raw),
    ]
    answer = await fay.get("/messages", params={"mailbox": "inbox", "limit": 1})
    assert answer.status_code == 200, answer.text
    async with api.store.db.reader() as session:
        newest, oldest = await get_messages(session, fay.user.id, [m.id for m in filed[::-1]])
    body = answer.json()
    assert body["next_cursor"]
    page = MessageList(items=[message_item(newest)], next_cursor=body["next_cursor"])
    assert body == page.model_dump(mode="json", by_alias=True)
    assert body["items"][0]["cc"] == ["Gus <gus@remote.test>"]
    assert body["items"][0]["from"] == {"name": "", "address": "zed@remote.test"}

    after = await fay.get(
        "/messages", params={"mailbox": "inbox", "limit": 1, "cursor": body["next_cursor"]}
    )
    expected = MessageList(items=[message_item(oldest)], next_cursor=None)
    assert after.json() == expected.model_dump(mode="json", by_alias=True)
