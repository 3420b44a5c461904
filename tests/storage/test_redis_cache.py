"""The Redis cache: values round-trip as bytes, expire, are deleted, and stay under the prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from storage.cache.redis import RedisCache
from tests.support.redis import REDIS_URL, unique_prefix


@pytest.fixture
async def cache(prefix: str) -> AsyncIterator[RedisCache]:
    opened = RedisCache(REDIS_URL, prefix)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_value_round_trips_as_bytes(cache: RedisCache) -> None:
    value = bytes(range(256)) * 4
    await cache.set("content:abc", value)
    assert await cache.get("content:abc") == value
    assert await cache.get("content:other") is None


async def test_set_replaces_and_delete_removes(cache: RedisCache) -> None:
    await cache.set("k", b"one")
    await cache.set("k", b"two")
    assert await cache.get("k") == b"two"
    await cache.delete("k")
    assert await cache.get("k") is None
    await cache.delete("k")  # deleting what is not there is fine


async def test_a_value_expires_after_its_ttl(cache: RedisCache) -> None:
    await cache.set("short", b"v", ttl=0.2)
    await cache.set("long", b"v", ttl=60)
    assert await cache.get("short") == b"v"
    await asyncio.sleep(0.3)
    assert await cache.get("short") is None
    assert await cache.get("long") == b"v"


async def test_keys_live_under_the_prefix_and_are_shared_by_processes(
    cache: RedisCache, prefix: str
) -> None:
    await cache.set("session:1", b"x", ttl=60)
    other_process = RedisCache(REDIS_URL, prefix)
    stranger = RedisCache(REDIS_URL, unique_prefix())
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert await other_process.get("session:1") == b"x"
        assert await stranger.get("session:1") is None
        assert await client.get(f"{prefix}cache:session:1") == b"x"
        assert 0 < await client.pttl(f"{prefix}cache:session:1") <= 60_000
    finally:
        await other_process.close()
        await stranger.close()
        await client.aclose()


async def test_an_unreachable_redis_is_a_miss_not_an_error() -> None:
    unreachable = RedisCache("redis://127.0.0.1:1/0", "nowhere:")
    try:
        await unreachable.set("k", b"v")
        assert await unreachable.get("k") is None
    finally:
        await unreachable.close()
