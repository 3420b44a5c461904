"""Readiness: whether the backends a role needs answer, each checked with a short timeout.

Liveness (``/healthz``) only says the process serves requests; readiness (``/readyz``) says it
can do its work, so a load balancer or Kubernetes sends it traffic only then. The checks:

- ``database``: ``SELECT 1`` on the metadata database;
- ``redis``: ``PING``, only when ``POSTROOM_REDIS_URL`` is set (queues, bus, cache live there);
- ``blobs``: a read of a key that never exists, through the blob store's own protocol. It must
  answer "not found": an unreachable S3 endpoint, a missing bucket, bad credentials or an
  unreadable data directory fail it. Roles that never touch blobs (realtime) skip it.

Checks run concurrently; the body names each with its state, and the reason when it failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import text

from postroom.errors import BlobNotFound
from storage.registry import Storage

__all__ = ["CHECK_SECONDS", "Readiness", "ReadinessReport"]

CHECK_SECONDS = 2.0
"""How long one check may take; a probe (Kubernetes: 1 s default, ours 3 s) waits for all."""

_PROBE_KEY = "0" * 64  # a valid key whose content (SHA-256 of nothing real) is never stored


@dataclass(frozen=True)
class ReadinessReport:
    ready: bool
    checks: dict[str, dict[str, str]]

    def body(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not ready", "checks": self.checks}


class Readiness:
    """The checks of one process's roles; opened with the storage, closed with it."""

    def __init__(self, store: Storage, *, blobs: bool = True) -> None:
        self.store = store
        self._checks: dict[str, Callable[[], Awaitable[None]]] = {"database": self._database}
        self._redis: aioredis.Redis | None = None
        if store.settings.redis_url:
            self._redis = aioredis.Redis.from_url(
                store.settings.redis_url,
                socket_connect_timeout=CHECK_SECONDS,
                socket_timeout=CHECK_SECONDS,
            )
            self._checks["redis"] = self._ping
        if blobs:
            self._checks["blobs"] = self._blobs

    async def check(self) -> ReadinessReport:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(name) for name in names))
        checks = dict(zip(names, results, strict=True))
        return ReadinessReport(all(c["state"] == "ok" for c in checks.values()), checks)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def _run(self, name: str) -> dict[str, str]:
        try:
            await asyncio.wait_for(self._checks[name](), CHECK_SECONDS)
        except TimeoutError:
            return {"state": "failed", "error": f"no answer within {CHECK_SECONDS:g} s"}
        except Exception as exc:  # any failure of a backend is "not ready", with its reason
            detail = str(exc).splitlines()[0] if str(exc) else ""
            return {"state": "failed", "error": f"{exc.__class__.__name__}: {detail}".rstrip()}
        return {"state": "ok"}

    async def _database(self) -> None:
        async with self.store.db.session() as session:
            await session.execute(text("SELECT 1"))

    async def _ping(self) -> None:
        assert self._redis is not None
        await self._redis.ping()

    async def _blobs(self) -> None:
        try:
            await self.store.blobs.get(_PROBE_KEY)
        except BlobNotFound:
            return
