"""The cache on Redis (production, when ``POSTROOM_REDIS_URL`` is set), shared by every process.

Keys are ``<prefix>cache:<key>``; a ttl becomes Redis's own expiry (PX), so nothing sweeps.
Redis is configured by its operator (``maxmemory-policy allkeys-lru`` suits a cache); whatever
it evicts or loses is rebuilt by the caller on the next miss.

A cache is never the only copy, so a Redis that does not answer costs time, not requests: a
failed ``get`` is a miss and a failed ``set`` is skipped, both logged. A failed ``delete`` is a
:class:`StorageError`, because the caller deletes to stop a stale value being served.
"""

from __future__ import annotations

import logging
import math

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from postroom.errors import StorageError

__all__ = ["RedisCache"]

log = logging.getLogger(__name__)


class RedisCache:
    def __init__(self, url: str, prefix: str) -> None:
        self._prefix = f"{prefix}cache:"
        self._client = aioredis.Redis.from_url(url)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(self._prefix + key)
        except RedisError as exc:
            log.warning("cache: Redis did not answer a GET (%s); treating it as a miss", exc)
            return None
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        expiry = None if ttl is None else max(1, math.ceil(ttl * 1000))
        try:
            await self._client.set(self._prefix + key, value, px=expiry)
        except RedisError as exc:
            log.warning("cache: Redis did not answer a SET (%s); not cached", exc)

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete(self._prefix + key)
        except RedisError as exc:
            raise StorageError(
                f"the Redis cache did not answer, so {key!r} may still be served stale: {exc}"
            ) from exc

    async def close(self) -> None:
        await self._client.aclose()
