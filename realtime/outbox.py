"""What one connection has still to send: a bounded queue of live frames, then the change log.

The hub hands each live event to every connection of its user without waiting for any of them.
A connection whose sender is idle and caught up (``live``) takes the frame straight onto its
socket, in the hub's own loop over the user's connections (websockets' ``broadcast``): ten
thousand connections cost ten thousand buffered writes, not ten thousand task wake-ups. Only
while its socket's write buffer stays under ``DIRECT_WRITE_LIMIT`` bytes, though: past that
(a client that stopped reading, a slow link), and whenever the sender is busy (catching up,
or sending earlier frames), frames wait here instead.

A connection that falls ``limit`` queued frames behind has its queue dropped and is marked
``behind``, and its sender reads what it missed from the change log once it can send again.
So one stuck client holds at most ``DIRECT_WRITE_LIMIT`` bytes plus ``limit`` frames of memory
and never delays the hub or anyone else.
"""

from __future__ import annotations

import asyncio
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

__all__ = ["DIRECT_WRITE_LIMIT", "Frame", "Outbox"]

DIRECT_WRITE_LIMIT = 64 * 1024
"""Bytes a connection's socket may hold unsent before live frames wait in its queue instead."""

Frame = tuple[int, bytes]
"""A live event ready to send: its ``seq`` and its UTF-8 JSON (encoded once for all clients)."""


class Outbox:
    __slots__ = ("_pending", "behind", "closed", "connection", "last", "limit", "live", "wake")

    def __init__(self, limit: int, connection: ServerConnection | None = None) -> None:
        self.limit = limit
        self.connection = connection
        self._pending: deque[Frame] = deque()
        self.behind = False
        self.closed = False
        self.live = False
        """Set by the sender when it has sent everything up to ``last`` and waits for more."""
        self.last = 0
        """The ``seq`` of the last frame sent (by the sender or straight to the socket)."""
        self.wake = asyncio.Event()

    def takes_directly(self, seq: int) -> bool:
        """Whether the frame ``seq`` may be written to the socket now, bypassing the sender.

        True only for the next frame in order while the sender is idle and the socket's
        buffer has room; the caller then writes it and this records it as sent.
        """
        connection = self.connection
        if (
            not self.live
            or seq != self.last + 1
            or connection is None
            or connection.protocol.state is not State.OPEN
            or connection.transport.get_write_buffer_size() >= DIRECT_WRITE_LIMIT
        ):
            return False
        self.last = seq
        return True

    def offer(self, frame: Frame) -> None:
        """Queue a live frame for the sender; never blocks. Past ``limit``, mark it behind."""
        self.live = False  # frames now go through the sender, in order, until it is idle again
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
        self.live = False
        self._pending.clear()
        self.wake.set()
