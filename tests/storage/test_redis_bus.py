"""The Redis pub/sub bus: events cross processes, one connection serves every subscriber, and a
Redis restart is survived.

Tests on the machine's Redis use a random prefix, so their channels are their own. The restart
test runs a private ``redis-server`` on a free port and really stops and starts it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from postroom.events import Event
from postroom.settings import Settings
from storage.bus.redis import RedisBus
from storage.cache.redis import RedisCache
from storage.registry import open_storage
from tests.support.platform import free_port
from tests.support.redis import REDIS_URL, require_redis, unique_prefix
from tests.support.services import require


@pytest.fixture
def prefix() -> str:
    require_redis()
    return unique_prefix()


@pytest.fixture
async def bus(prefix: str) -> AsyncIterator[RedisBus]:
    opened = RedisBus(REDIS_URL, prefix)
    try:
        yield opened
    finally:
        await opened.close()


def _event(seq: int, user: str = "u1") -> Event:
    return Event(type="mail.new", user_id=user, seq=seq, data={"message": {"id": f"m{seq}"}})


async def _take(events: AsyncIterator[Event], count: int) -> list[Event]:
    taken: list[Event] = []
    async with asyncio.timeout(10):
        async for event in events:
            taken.append(event)
            if len(taken) == count:
                break
    return taken


async def test_an_event_reaches_a_subscriber_of_another_bus_in_order(prefix: str) -> None:
    publisher, subscriber = RedisBus(REDIS_URL, prefix), RedisBus(REDIS_URL, prefix)
    try:
        async with subscriber.subscribe("user.u1") as events:
            for seq in range(1, 6):
                await publisher.publish("user.u1", _event(seq))
            received = await _take(events, 5)
    finally:
        await publisher.close()
        await subscriber.close()

    assert received == [_event(seq) for seq in range(1, 6)]


async def test_publish_many_reaches_each_channel_in_order(prefix: str) -> None:
    publisher, subscriber = RedisBus(REDIS_URL, prefix), RedisBus(REDIS_URL, prefix)
    try:
        async with (
            subscriber.subscribe("user.u1") as u1,
            subscriber.subscribe("user.u2") as u2,
        ):
            await publisher.publish_many(
                [("user.u1" if seq % 2 else "user.u2", _event(seq)) for seq in range(1, 7)]
            )
            heard = (await _take(u1, 3), await _take(u2, 3))
    finally:
        await publisher.close()
        await subscriber.close()

    assert heard == ([_event(1), _event(3), _event(5)], [_event(2), _event(4), _event(6)])


async def test_a_subscriber_hears_only_its_channel(bus: RedisBus) -> None:
    async with bus.subscribe("user.ann") as ann, bus.subscribe("user.bob") as bob:
        await bus.publish("user.bob", _event(1, "bob"))
        await bus.publish("user.ann", _event(7, "ann"))
        assert await _take(ann, 1) == [_event(7, "ann")]
        assert await _take(bob, 1) == [_event(1, "bob")]


async def test_another_prefix_does_not_hear_the_event(bus: RedisBus) -> None:
    stranger = RedisBus(REDIS_URL, unique_prefix())
    try:
        async with stranger.subscribe("user.u1") as theirs, bus.subscribe("user.u1") as ours:
            await bus.publish("user.u1", _event(1))
            assert await _take(ours, 1) == [_event(1)]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(_take(theirs, 1), 0.5)
    finally:
        await stranger.close()


async def test_many_subscribers_share_one_redis_connection(bus: RedisBus, prefix: str) -> None:
    channels = [f"user.u{n}" for n in range(50)]
    async with AsyncExitStack() as stack:
        subscriptions = [await stack.enter_async_context(bus.subscribe(c)) for c in channels]
        subscriptions += [await stack.enter_async_context(bus.subscribe("user.u0"))]
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            ours = [c for c in await client.client_list() if c["name"] == f"{prefix}bus"]
        finally:
            await client.aclose()
        await bus.publish("user.u0", _event(3, "u0"))
        first, last = await _take(subscriptions[0], 1), await _take(subscriptions[-1], 1)

    assert len(ours) == 1, "one pub/sub connection for every channel of this process"
    assert int(ours[0]["sub"]) == len(channels) + 1, "each channel subscribed once, plus control"
    assert first == last == [_event(3, "u0")], "both local subscribers of user.u0 hear it"


async def test_leaving_and_joining_again_still_hears_events(bus: RedisBus) -> None:
    for seq in range(1, 4):
        async with bus.subscribe("user.u1") as events:
            await bus.publish("user.u1", _event(seq))
            assert await _take(events, 1) == [_event(seq)]


async def test_the_registry_picks_redis_bus_and_cache_for_a_redis_url(
    prefix: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_URL, redis_prefix=prefix)
    store = open_storage(settings)
    try:
        assert isinstance(store.bus, RedisBus)
        assert isinstance(store.cache, RedisCache)
    finally:
        await store.close()


# -- a Redis restart ------------------------------------------------------------------------


@contextmanager
def _private_redis() -> Iterator[tuple[str, Path, int]]:
    binary = shutil.which("redis-server")
    require(binary is not None, "redis-server is not installed (Debian: redis-server)")
    with tempfile.TemporaryDirectory(prefix="postroom-redis-") as folder:
        yield str(binary), Path(folder), free_port()


def _start_redis(binary: str, folder: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process


async def _until_answers(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    await client.ping()
                    return
                except (OSError, aioredis.ConnectionError):
                    await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def test_subscribers_hear_events_again_after_redis_restarts() -> None:
    with _private_redis() as (binary, folder, port):
        url = f"redis://127.0.0.1:{port}/0"
        server = _start_redis(binary, folder, port)
        bus = RedisBus(url, "restart:")
        try:
            await _until_answers(url)
            async with bus.subscribe("user.u1") as events:
                await bus.publish("user.u1", _event(1))
                assert await _take(events, 1) == [_event(1)]

                server.terminate()
                server.wait(10)
                await bus.publish("user.u1", _event(2))  # lost, and not raised into the caller
                server = _start_redis(binary, folder, port)
                await _until_answers(url)

                # Pub/sub keeps nothing while nobody listens, so publish until the reconnected
                # subscriber hears one: it must, without subscribing again.
                heard: list[Event] = []

                async def collect() -> None:
                    async for event in events:
                        heard.append(event)

                collector = asyncio.create_task(collect())
                try:
                    async with asyncio.timeout(20):
                        seq = 3
                        while not heard:
                            await bus.publish("user.u1", _event(seq))
                            seq += 1
                            await asyncio.sleep(0.1)
                finally:
                    collector.cancel()
        finally:
            await bus.close()
            server.terminate()
            server.wait(10)

    assert heard[0].seq >= 3, "event 2 was published while Redis was down"
