"""The machine's Redis for tests: where it is, whether it answers, and cleaning up a prefix.

Tests share one Redis server, so each uses a key prefix of its own and deletes only keys under
it; only the FLUSHALL end-to-end test empties the server, on purpose.
"""

from __future__ import annotations

import os
import secrets

import redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.support.services import require

__all__ = ["REDIS_URL", "delete_prefix", "require_redis", "unique_prefix"]

REDIS_URL = os.environ.get("POSTROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    return f"postroom-test-{secrets.token_hex(6)}:"


def require_redis() -> None:
    """Skip (locally) or fail (CI) unless Redis answers PING; usable from sync and async tests."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except (OSError, RedisError) as exc:
        require(False, f"Redis at {REDIS_URL} is not usable: {exc}")
    finally:
        client.close()


async def delete_prefix(prefix: str) -> None:
    """Delete every key under ``prefix`` and nothing else."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
