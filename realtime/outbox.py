"""What one connection has still to send: a bounded queue of live frames, then the change log.

The hub hands each live event to every connection of its user without waiting for any of them.
A connection that keeps up finds the frames here; one that falls ``limit`` events behind (a
client that stopped reading, a slow link) has its queue dropped and is marked ``behind``, and
its sender reads what it missed from the change log once it can send again. So one stuck client
holds at most ``limit`` frames of memory and never delays the hub or anyone else.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Frame", "Outbox"]

Frame = tuple[int, str]
"""A live event ready to send: its ``seq`` and its JSON text (encoded once for all clients)."""


class Outbox:
    __slots__ = ("_pending", "behind", "closed", "limit", "wake")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pending: deque[Frame] = deque()
        self.behind = False
        self.closed = False
        self.wake = asyncio.Event()

    def offer(self, frame: Frame) -> None:
        """Queue a live frame; never blocks. Past ``limit``, mark the connection behind."""
        if self.behind or self.closed:
            return
        if len(self._pending) >= self.limit:
            self._pending.clear()
            self.behind = True
        else:
            self._pending.append(frame)
        self.wake.set()

    def take(self) -> list[Frame] | None:
        """The frames queued so far, or ``None`` when the change log must be read instead."""
        self.wake.clear()
        if self.behind:
            self.behind = False
            return None
        frames = list(self._pending)
        self._pending.clear()
        return frames

    def close(self, *_: object) -> None:
        """The connection is gone: wake its sender so it can finish."""
        self.closed = True
        self._pending.clear()
        self.wake.set()
