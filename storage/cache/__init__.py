"""A cache for things that are expensive to rebuild and safe to lose.

Nothing in it is the only copy: a miss (or a flushed Redis) costs time, never data.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Cache"]


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...
