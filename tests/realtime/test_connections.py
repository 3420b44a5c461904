"""Connections: a client that stops reading holds back nobody, and the door is kept (origins,
the per-user cap, heartbeats, 4401 on silence, 1001 on stop).

These do not depend on the database, so they run on SQLite only.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from realtime import server as realtime_server
from storage.schema import migrate
from tests.realtime import client
from tests.realtime.conftest import Running, Start


@pytest.fixture(scope="module")
def migrated_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{Path(tmp_path_factory.mktemp('db')) / 'postroom.db'}"
    migrate(url)
    return url


# -- a client that never reads --------------------------------------------------------------


async def test_a_client_that_never_reads_delays_nobody_and_catches_up_later(
    start_realtime: Start,
) -> None:
    running = await start_realtime(realtime_send_queue=4, realtime_ping_interval_seconds=60)
    stuck_socket = socket.socket()
    stuck_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck_socket.connect(("127.0.0.1", running.port))
    stuck_socket.setblocking(False)
    events = 60
    async with (
        connect(running.url_with_token(), sock=stuck_socket, max_queue=1) as stuck,
        connect(running.url_with_token()) as ann,
        connect(running.url_with_token()) as bob,
    ):
        for ws in (stuck, ann, bob):
            await client.ready(ws)
        readers = [asyncio.create_task(client.frames(ws, events)) for ws in (ann, bob)]
        seqs: list[int] = []
        for _ in range(events):  # 64 KB each: far more than the stuck client's buffers hold
            seqs += await running.record(1, snippet_size=64 * 1024)
        ann_frames, bob_frames = await asyncio.gather(*readers)
        lagging = running.server.hub.lagging(running.user_id)
        stuck_frames = await client.frames(stuck, events)

    assert [f["seq"] for f in ann_frames] == [f["seq"] for f in bob_frames] == seqs
    assert lagging == 1, "the stuck client's queue overflowed while the others received all"
    assert [f["seq"] for f in stuck_frames] == seqs, "it catches up from the log, in order"


# -- the door -------------------------------------------------------------------------------


async def test_only_allowed_origins_may_connect(start_realtime: Start) -> None:
    running = await start_realtime(realtime_allowed_origins="https://mail.example.test")
    async with connect(running.url_with_token(), origin=Origin("https://mail.example.test")) as ws:
        await client.ready(ws)
    async with connect(running.url_with_token()) as ws:  # no Origin: not a browser
        await client.ready(ws)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(running.url_with_token(), origin=Origin("https://evil.test")):
            pass
    assert refused.value.response.status_code == 403
    assert b"POSTROOM_REALTIME_ALLOWED_ORIGINS" in refused.value.response.body


async def test_a_user_may_hold_only_so_many_connections(start_realtime: Start) -> None:
    running = await start_realtime(realtime_max_connections_per_user=2)
    async with connect(running.url_with_token()) as first, connect(running.url_with_token()) as b:
        await client.ready(first)
        await client.ready(b)
        async with connect(running.url_with_token()) as third:
            code, reason = await client.closed_with(third)
        await first.close()
        admitted = await _admitted_soon(running)

    assert code == 4429
    assert "at most 2" in reason
    assert admitted, "a closed connection frees its place"


async def _admitted_soon(running: Running) -> bool:
    """Whether a new connection gets in within a few tries (the server notices a close a
    moment after the client has finished closing).
    """
    for _ in range(50):
        async with connect(running.url_with_token()) as ws:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
            if frame["type"] == "ready":
                return True
        await asyncio.sleep(0.05)
    return False


async def test_silence_instead_of_a_hello_is_closed_with_4401(
    start_realtime: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(realtime_server, "HELLO_TIMEOUT", 0.2)
    running = await start_realtime()
    async with connect(running.url()) as ws:
        code, reason = await client.closed_with(ws)
    assert code == 4401
    assert "hello" in reason


async def test_a_peer_that_never_answers_pings_is_closed(start_realtime: Start) -> None:
    running = await start_realtime(
        realtime_ping_interval_seconds=0.2, realtime_ping_timeout_seconds=0.2
    )
    async with connect(running.url_with_token()) as alive:
        await client.ready(alive)
        received = await _silent_peer(running)
        await asyncio.sleep(0.6)  # several ping rounds: a client that answers stays
        seq = await running.record(1)
        (pushed,) = await client.frames(alive, 1)

    assert received[0] == 0x81, "the silent peer got its ready frame"
    assert b"\x89\x04" in received or b"\x89\x00" in received, "then pings"
    assert b"\x88" in received, "then a close frame, before the server hung up"
    assert pushed["seq"] == seq[0]


async def _silent_peer(running: Running) -> bytes:
    """A client that completes the handshake, then never answers: returns all it received
    until the server hung up.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(
        f"GET /ws?token={running.token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    try:
        async with asyncio.timeout(15):
            return await reader.read()  # until EOF: the server closed the connection
    finally:
        writer.close()


async def test_stopping_closes_clients_with_1001(start_realtime: Start) -> None:
    running = await start_realtime()
    async with connect(running.url_with_token()) as ws:
        await client.ready(ws)
        await running.server.stop(5)
        code, _ = await client.closed_with(ws)
    assert code == 1001
