"""A listed page is served again only while nothing of its user changed: every change shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

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
