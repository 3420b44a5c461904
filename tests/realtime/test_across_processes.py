"""Events cross processes over Redis: mail filed by a processor in one process reaches clients of
two other realtime processes, and a long poll on a gateway process.

Every role runs as its own ``postroom run ROLE`` against one PostgreSQL database and one Redis
(a key prefix of this module's own), as in production.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.realtime import client
from tests.support.platform import Platform
from tests.support.redis import REDIS_URL, delete_prefix, require_redis, unique_prefix
from tests.support.services import postgres_database

# Five role processes start under the module fixture; on a busy machine that takes a while.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Platform]]:
    """Process group A (smtp-in, processor, gateway, realtime) and a realtime process B."""
    require_redis()
    prefix = unique_prefix()
    env = {"POSTROOM_REDIS_URL": REDIS_URL, "POSTROOM_REDIS_PREFIX": prefix}
    with postgres_database() as url:
        a = Platform(Path(tmp_path_factory.mktemp("a")), url, env)
        b = Platform(Path(tmp_path_factory.mktemp("b")), url, env)  # ports of its own
        try:
            a.setup("example.test", "bob@example.test")
            for role in ("processor", "smtp-in", "gateway", "realtime"):
                a.start_role(role)
            b.start_role("realtime")
            yield a, b
        finally:
            a.stop()
            b.stop()
            asyncio.run(delete_prefix(prefix))


def _ws(platform: Platform, token: str) -> str:
    return f"ws://127.0.0.1:{platform.realtime_port}/ws?token={token}"


async def _deliver(platform: Platform, subject: str) -> None:
    raw = f"From: zed@remote.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nhi\r\n"

    def send() -> None:
        with platform.smtp() as smtp:
            smtp.sendmail("zed@remote.test", ["bob@example.test"], raw.encode())

    await asyncio.to_thread(send)


async def _mail_new(ws: ClientConnection) -> dict[str, object]:
    while True:
        (frame,) = await client.frames(ws, 1)
        if frame["type"] == "mail.new":
            return frame


async def test_mail_filed_in_one_process_reaches_clients_of_other_realtime_processes(
    roles: tuple[Platform, Platform],
) -> None:
    a, b = roles
    token = await asyncio.to_thread(a.token, "bob@example.test")
    subject = f"across {uuid.uuid4().hex[:6]}"
    async with connect(_ws(a, token)) as on_a, connect(_ws(b, token)) as on_b:
        ready = await client.ready(on_a)
        await client.ready(on_b)
        await _deliver(a, subject)
        pushed = await asyncio.gather(_mail_new(on_a), _mail_new(on_b))

    assert pushed[0] == pushed[1]
    assert pushed[0]["seq"] == ready + 1
    message = pushed[0]["message"]
    assert isinstance(message, dict) and message["subject"] == subject


async def test_a_long_poll_on_the_gateway_process_hears_the_processor(
    roles: tuple[Platform, Platform],
) -> None:
    a, _ = roles
    token = await asyncio.to_thread(a.token, "bob@example.test")
    subject = f"polled {uuid.uuid4().hex[:6]}"
    with a.api(token) as api:
        latest = api.get("/changes").json()["latest"]
        waiting = asyncio.create_task(
            asyncio.to_thread(api.get, "/events", params={"since": latest, "timeout": 20})
        )
        await _deliver(a, subject)
        response = await waiting

    assert response.status_code == 200, response.text
    events = response.json()["events"]
    assert [e["message"]["subject"] for e in events if e["type"] == "mail.new"] == [subject]


async def test_sigterm_closes_clients_with_1001(roles: tuple[Platform, Platform]) -> None:
    a, b = roles
    token = await asyncio.to_thread(a.token, "bob@example.test")
    (process,) = b.role_processes
    async with connect(_ws(b, token)) as ws:
        await client.ready(ws)
        process.send_signal(signal.SIGTERM)
        code, _ = await client.closed_with(ws)

    assert code == 1001, "going away: reconnect, to another realtime process"
    assert await asyncio.to_thread(process.wait, 10) == 0
