"""The one place that maps settings URLs to backend implementations.

Each concern has an effective URL: the database and blob URLs as set (or their embedded
defaults); queues, bus and cache follow ``POSTROOM_REDIS_URL`` and otherwise use the metadata
database (queues) or the process itself (bus, cache). The scheme of that URL picks the backend.
Adding a backend means adding one line to one table below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from limits.aio.storage import Storage as LimitStorage

from postroom.errors import ConfigurationError
from postroom.settings import Settings
from storage.blobs import BlobStore
from storage.blobs.files import FileBlobStore
from storage.blobs.s3 import S3BlobStore
from storage.bus import EventBus
from storage.bus.memory import MemoryBus
from storage.bus.redis import RedisBus
from storage.cache import Cache
from storage.cache.memory import MemoryCache
from storage.cache.redis import RedisCache
from storage.db.database import Database, open_postgresql, open_sqlite
from storage.queues import Queue
from storage.queues.redis_streams import RedisStreamQueue
from storage.queues.table import TableQueue
from storage.rate_limits import memory_counters, redis_counters

__all__ = ["Storage", "open_database", "open_limit_storage", "open_storage"]

T = TypeVar("T")

DATABASES: dict[str, Callable[[str], Database]] = {
    "sqlite+aiosqlite": open_sqlite,
    "postgresql+asyncpg": open_postgresql,
}
BLOB_STORES: dict[str, Callable[[str, Settings], BlobStore]] = {
    "file": lambda url, _settings: FileBlobStore.from_url(url),
    "s3": lambda url, settings: S3BlobStore.from_url(url, settings.s3_endpoint_url),
}
QUEUES: dict[str, Callable[[str, Database, Settings], Queue]] = {
    "sql": lambda _url, db, _settings: TableQueue(db),
    "redis": lambda url, _db, settings: RedisStreamQueue(url, settings.redis_prefix),
    "rediss": lambda url, _db, settings: RedisStreamQueue(url, settings.redis_prefix),
}
BUSES: dict[str, Callable[[str, Settings], EventBus]] = {
    "memory": lambda _url, _settings: MemoryBus(),
    "redis": lambda url, settings: RedisBus(url, settings.redis_prefix),
    "rediss": lambda url, settings: RedisBus(url, settings.redis_prefix),
}
CACHES: dict[str, Callable[[str, Settings], Cache]] = {
    "memory": lambda _url, _settings: MemoryCache(),
    "redis": lambda url, settings: RedisCache(url, settings.redis_prefix),
    "rediss": lambda url, settings: RedisCache(url, settings.redis_prefix),
}

LIMIT_STORES: dict[str, Callable[[str, str], LimitStorage]] = {
    "memory": memory_counters,
    "redis": redis_counters,
    "rediss": redis_counters,
}


def _backend(table: dict[str, T], url: str, concern: str) -> T:
    scheme = url.split("://", 1)[0]
    try:
        return table[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in table)
        raise ConfigurationError(
            f"{concern} URL {url!r} has an unknown scheme {scheme!r}; use one of: {known}"
        ) from None


@dataclass
class Storage:
    """Every backend a role may need, opened from one settings object."""

    settings: Settings
    db: Database
    blobs: BlobStore
    queue: Queue
    bus: EventBus
    cache: Cache

    async def close(self) -> None:
        for backend in (self.queue, self.bus, self.cache, self.blobs):
            await backend.close()
        await self.db.close()


def open_database(url: str) -> Database:
    return _backend(DATABASES, url, "database")(url)


def open_limit_storage(settings: Settings) -> LimitStorage:
    """Rate-limit counters: shared through Redis when configured, else this process's own."""
    url = settings.redis_url or "memory://"
    return _backend(LIMIT_STORES, url, "rate limit")(url, settings.redis_prefix)


def open_storage(settings: Settings) -> Storage:
    db = open_database(settings.database_url)
    queue_url = settings.redis_url or "sql://"
    shared_url = settings.redis_url or "memory://"
    return Storage(
        settings=settings,
        db=db,
        blobs=_backend(BLOB_STORES, settings.blob_url, "blob")(settings.blob_url, settings),
        queue=_backend(QUEUES, queue_url, "queue")(queue_url, db, settings),
        bus=_backend(BUSES, shared_url, "bus")(shared_url, settings),
        cache=_backend(CACHES, shared_url, "cache")(shared_url, settings),
    )
