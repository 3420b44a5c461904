"""PostgreSQL dropping every connection (a restart, a failover) heals by itself, losing nothing.

The pool does not ping before each use, so the first request to meet a dead connection fails
(503, nothing promised); the pool is then refreshed and the next request succeeds. Every 202
given is a message in Sent, and nothing else is. The test ends the backends of its own database
with ``pg_terminate_backend`` rather than restarting the machine's server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.gateway_api import api_for
from tests.support.services import POSTGRES_ADMIN_URL, postgres_database
from tests.support.tcp_proxy import TcpProxy

MESSAGE = {"to": ["someone@remote.test"], "subject": "After the restart", "text": "Still here?"}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


async def _drop_connections(url: str) -> int:
    """End every backend serving ``url``'s database, as a server restart would."""
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            url.rsplit("/", 1)[1],
        )
    finally:
        await admin.close()
    return int(ended)


async def test_sends_recover_after_postgresql_drops_every_connection(
    postgres_url: str, tmp_path: Path
) -> None:
    async with api_for(postgres_url, tmp_path) as api:
        ann = await api.user("ann@dropped.test")
        promised: set[str] = set()
        for _ in range(3):
            answer = await ann.post("/send", json=MESSAGE)
            assert answer.status_code == 202, answer.text
            promised.add(answer.json()["message_id"])

        assert await _drop_connections(postgres_url) >= 1

        statuses = []
        for _ in range(4):
            answer = await ann.post("/send", json=MESSAGE)
            statuses.append(answer.status_code)
            if answer.status_code == 202:
                promised.add(answer.json()["message_id"])
            else:
                assert answer.status_code == 503, answer.text
                assert "try again" in answer.json()["error"]["message"]
        assert statuses[1:] == [202, 202, 202], statuses

        listing = await ann.get("/messages", params={"mailbox": "sent", "limit": 50})
        assert listing.status_code == 200, listing.text
        assert {item["id"] for item in listing.json()["items"]} == promised


async def test_while_the_database_is_unreachable_requests_get_503_and_recover(
    postgres_url: str, tmp_path: Path
) -> None:
    """A database that is down (restarting, partitioned) is "try again", never a 500."""
    host_port = postgres_url.rsplit("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    through_proxy = postgres_url.replace(host_port, f"127.0.0.1:{proxy.port}")
    try:
        async with api_for(through_proxy, tmp_path) as api:
            ann = await api.user("ann@unreachable.test")
            assert (await ann.post("/send", json=MESSAGE)).status_code == 202

            await proxy.stop()
            for _ in range(3):  # a dead pooled connection, then refused new ones
                answer = await ann.post("/send", json=MESSAGE)
                assert answer.status_code == 503, answer.text
                assert "try again" in answer.json()["error"]["message"]
                listing = await ann.get("/messages", params={"mailbox": "sent"})
                assert listing.status_code == 503, listing.text

            await proxy.start()
            statuses = [(await ann.post("/send", json=MESSAGE)).status_code for _ in range(3)]
            assert statuses[-2:] == [202, 202], statuses
            listing = await ann.get("/messages", params={"mailbox": "sent", "limit": 50})
            assert len(listing.json()["items"]) == 1 + statuses.count(202)
    finally:
        await proxy.stop()
