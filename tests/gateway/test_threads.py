"""Thread view: a conversation's messages, oldest first, across mailboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.gateway_api import Api, api_for, compose

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("threads"))) as api:
        yield api


async def test_a_thread_gathers_replies_from_every_mailbox(api: Api) -> None:
    ann = await api.user("ann@threads.test")
    first = await api.deliver(ann.user, compose("Plans", text="Saturday?"))
    detail = (await ann.get(f"/messages/{first.id}")).json()
    reply = await api.deliver(
        ann.user,
        compose("Re: Plans", sender="ann@threads.test", in_reply_to=detail["message_id"]),
        mailbox="sent",
    )
    other = await api.deliver(ann.user, compose("Unrelated"))
    assert reply.thread_id == first.thread_id != other.thread_id

    answer = await ann.get(f"/threads/{first.thread_id}")
    assert answer.status_code == 200
    thread = answer.json()
    assert (thread["id"], thread["subject"]) == (first.thread_id, "Plans")
    assert [m["id"] for m in thread["messages"]] == [first.id, reply.id]
    assert {m["thread"] for m in thread["messages"]} == {first.thread_id}
    assert thread["messages"][1]["from"]["address"] == "ann@threads.test"

    await ann.request("DELETE", f"/messages/{reply.id}")
    await ann.request("DELETE", f"/messages/{reply.id}")
    left = (await ann.get(f"/threads/{first.thread_id}")).json()["messages"]
    assert [m["id"] for m in left] == [first.id]
    assert (await ann.get("/threads/no-such-thread")).status_code == 404
