"""Catch-up: the change log replayed in order, joined to the live stream with no gap and no
duplicate; ``resync`` when the log cannot serve; lost or late events read back from the log.

Changes are committed with ``record_change`` (tests/realtime/conftest.py), on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import pytest
from websockets.asyncio.client import connect

from storage.repositories.changes import prune_changes
from tests.realtime import client
from tests.realtime.conftest import Start


async def test_ready_then_live_events_with_the_message(start_realtime: Start) -> None:
    running = await start_realtime()
    async with connect(running.url_with_token()) as ws:
        ready = await client.ready(ws)
        seqs = await running.record(2)
        frames = await client.frames(ws, 2)

    assert seqs == [ready + 1, ready + 2]
    assert [f["seq"] for f in frames] == seqs
    assert all(f["type"] == "mail.new" and f["message"]["mailbox"] == "inbox" for f in frames)


@pytest.mark.parametrize("how", ["query", "hello"])
async def test_since_replays_missed_changes_then_continues_live(
    start_realtime: Start, how: str
) -> None:
    running = await start_realtime()
    async with connect(running.url_with_token()) as ws:
        since = await client.ready(ws)
    missed = await running.record(3)

    if how == "query":
        url = running.url_with_token(f"&since={since}")
    else:
        url = running.url()
    async with connect(url) as ws:
        if how == "hello":
            await ws.send(json.dumps({"type": "hello", "token": running.token, "since": since}))
        replayed = await client.frames(ws, 4)
        live = await running.record(2)
        pushed = await client.frames(ws, 2)

    assert [f["seq"] for f in replayed[:3]] == missed
    assert replayed[3] == {"type": "ready", "seq": missed[-1]}
    assert [f["seq"] for f in pushed] == live == [missed[-1] + 1, missed[-1] + 2]


async def test_live_events_racing_the_replay_arrive_once_in_order(start_realtime: Start) -> None:
    running = await start_realtime()
    since = (await running.record(1))[0]
    await running.record(100)

    async def keep_writing() -> None:
        for _ in range(21):
            await running.record(1)

    async with connect(running.url_with_token(f"&since={since}")) as ws:
        # changes keep committing while the server replays the log to this client
        await keep_writing()
        frames = await client.frames(ws, 121 + 1)

    seqs = [f["seq"] for f in frames if f["type"] == "mail.new"]
    assert seqs == list(range(since + 1, since + 122))
    assert [f["type"] for f in frames].count("ready") == 1


async def test_each_connection_of_a_user_gets_every_event_once_in_order(
    start_realtime: Start,
) -> None:
    """Frames written straight to idle sockets and frames queued for senders still replaying
    interleave; no connection sees a gap, a duplicate or a reordering.
    """
    running = await start_realtime()
    since = (await running.record(1))[0]
    missed = await running.record(50)
    async with AsyncExitStack() as stack:
        live = [await stack.enter_async_context(connect(running.url_with_token())) for _ in "abcd"]
        for ws in live:
            await client.ready(ws)
        replaying = [
            await stack.enter_async_context(connect(running.url_with_token(f"&since={since}")))
            for _ in "abcd"
        ]
        written: list[int] = []
        for _ in range(30):
            written += await running.record(1)
        live_frames = [await client.frames(ws, 30) for ws in live]
        replayed_frames = [await client.frames(ws, 50 + 1 + 30) for ws in replaying]

    for frames in live_frames:
        assert [f["seq"] for f in frames] == written
    for frames in replayed_frames:
        seqs = [f["seq"] for f in frames if f["type"] == "mail.new"]
        assert seqs == [*missed, *written]
        assert [f["type"] for f in frames].count("ready") == 1


@pytest.mark.parametrize("case", ["pruned", "ahead"])
async def test_a_since_the_log_cannot_serve_gets_resync(start_realtime: Start, case: str) -> None:
    running = await start_realtime()
    first = (await running.record(5))[0]
    if case == "pruned":
        async with running.store.db.session() as session, session.begin():
            await prune_changes(session, running.user_id, keep=2)
        since = first
    else:
        since = first + 100

    async with connect(running.url_with_token(f"&since={since}")) as ws:
        resync, ready = await client.frames(ws, 2)
        live = await running.record(1)
        (pushed,) = await client.frames(ws, 1)

    assert resync == {"type": "resync", "seq": first + 4}
    assert ready == {"type": "ready", "seq": first + 4}
    assert pushed["seq"] == live[0] == first + 5


@pytest.mark.parametrize("bus", ["memory", "redis"])
async def test_events_the_bus_lost_are_read_back_from_the_log(
    start_realtime: Start, bus: str
) -> None:
    running = await start_realtime(redis=bus == "redis")
    async with connect(running.url_with_token()) as ws:
        ready = await client.ready(ws)
        lost = await running.record(2, publish=False)
        delivered = await running.record(1)
        frames = await client.frames(ws, 3)

    assert [f["seq"] for f in frames] == [*lost, *delivered] == [ready + 1, ready + 2, ready + 3]


@pytest.mark.parametrize("since", ["-1", "abc"])
async def test_a_malformed_since_is_closed_with_4400(start_realtime: Start, since: str) -> None:
    running = await start_realtime()
    async with connect(running.url_with_token(f"&since={since}")) as ws:
        code, reason = await client.closed_with(ws)
    assert code == 4400
    assert "since" in reason
