"""Rate limits: sends and reads budgeted per user and per IP, shared by gateways through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from postroom.settings import Settings
from storage.repositories.accounts import add_domain, add_user
from tests.support.gateway_api import Api, api_for
from tests.support.platform import PASSWORD, Platform, free_port
from tests.support.redis import REDIS_URL, delete_prefix, require_redis, unique_prefix
from tests.support.stores import migrated_storage

MESSAGE = {"to": ["zed@remote.test"], "text": "hi"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """Small budgets on the memory backend (counters are not stored in the database)."""
    directory = Path(tmp_path_factory.mktemp("limits"))
    async with api_for(
        f"sqlite+aiosqlite:///{directory / 'postroom.db'}",
        directory,
        rate_send_user="2/hour",
        rate_send_ip="3/hour",
        rate_read_user="3/hour",
        rate_read_ip="",
    ) as api:
        yield api


def _assert_limited(answer: httpx.Response, limit: int) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["code"] == "rate_limited"
    assert answer.headers["RateLimit-Limit"] == str(limit)
    assert answer.headers["RateLimit-Remaining"] == "0"
    wait = int(answer.headers["Retry-After"])
    assert 0 < wait <= 3600
    assert answer.headers["RateLimit-Reset"] == str(wait)


@pytest.mark.asyncio(loop_scope="module")
async def test_sends_per_user_then_per_ip(api: Api) -> None:
    ann = await api.user("ann@limits.test")
    bob = await api.user("bob@limits.test")
    assert [(await ann.post("/send", json=MESSAGE)).status_code for _ in range(2)] == [202, 202]
    _assert_limited(await ann.post("/send", json=MESSAGE), 2)  # ann's own budget
    assert (await bob.post("/send", json=MESSAGE)).status_code == 202
    _assert_limited(await bob.post("/send", json=MESSAGE), 3)  # the shared IP's budget


@pytest.mark.asyncio(loop_scope="module")
async def test_reads_have_their_own_budget(api: Api) -> None:
    cat = await api.user("cat@limits.test")
    assert [(await cat.get("/mailboxes")).status_code for _ in range(3)] == [200, 200, 200]
    _assert_limited(await cat.get("/mailboxes"), 3)
    assert (await cat.get("/templates")).status_code == 429  # every read route spends it
    assert (await cat.post("/drafts", json={"subject": "x"})).status_code == 201  # not a read


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, int]]:
    """Two ``postroom run gateway`` processes on one database and one Redis."""
    require_redis()
    prefix = unique_prefix()
    directory = Path(tmp_path_factory.mktemp("two-gateways"))
    platform = Platform(
        directory,
        f"sqlite+aiosqlite:///{directory / 'postroom.db'}",
        extra_env={
            "POSTROOM_REDIS_URL": REDIS_URL,
            "POSTROOM_REDIS_PREFIX": prefix,
            "POSTROOM_RATE_SEND_USER": "3/hour",
            "POSTROOM_RATE_READ_USER": "4/hour",
        },
    )
    asyncio.run(_sign_up(platform))
    try:
        platform.start_role("gateway")
        second = free_port()
        platform.env["POSTROOM_HTTP_PORT"] = str(second)
        platform.start_role("gateway")
        yield platform, second
    finally:
        platform.stop()
        asyncio.run(delete_prefix(prefix))


async def _sign_up(platform: Platform) -> None:
    """What ``postroom migrate``, ``domain add`` and ``user add`` do, without three processes."""
    settings = Settings(data_dir=platform.data_dir, database_url=platform.database_url)
    async with migrated_storage(settings) as store, store.db.session() as session:
        async with session.begin():
            await add_domain(session, "shared.test")
            await add_user(session, "ann@shared.test", PASSWORD)


def test_two_gateway_processes_share_one_budget(two_gateways: tuple[Platform, int]) -> None:
    platform, second_port = two_gateways
    token = platform.token("ann@shared.test")
    headers = {"Authorization": f"Bearer {token}"}
    ports = [platform.http_port, second_port] * 3

    def call(port: int, method: str, path: str) -> httpx.Response:
        url = f"http://127.0.0.1:{port}/api/v1{path}"
        return httpx.request(method, url, headers=headers, json=MESSAGE, timeout=30)

    sends = [call(port, "POST", "/send") for port in ports[:4]]
    assert [s.status_code for s in sends[:3]] == [202, 202, 202], sends[-1].text
    _assert_limited(sends[3], 3)  # the 4th, on the second process, after 1 of its own

    reads = [call(port, "GET", "/mailboxes") for port in ports[:5]]
    assert [r.status_code for r in reads[:4]] == [200, 200, 200, 200]
    _assert_limited(reads[4], 4)
