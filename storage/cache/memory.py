"""An in-process LRU cache with expiry (the embedded default)."""

from __future__ import annotations

import time
from collections import OrderedDict

__all__ = ["MemoryCache"]


class MemoryCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float | None, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires is not None and expires < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        expires = time.monotonic() + ttl if ttl is not None else None
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def close(self) -> None:
        self._entries.clear()
