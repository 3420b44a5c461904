"""An in-process bus (the embedded default): every role of ``postroom up`` shares it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from postroom.events import Event

__all__ = ["MemoryBus"]

log = logging.getLogger(__name__)

SUBSCRIBER_BUFFER = 1000


class MemoryBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}

    async def publish(self, channel: str, event: Event) -> None:
        for queue in self._subscribers.get(channel, ()):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning(
                    "subscriber on %s is %d events behind; dropping", channel, queue.qsize()
                )

    async def publish_many(self, messages: Sequence[tuple[str, Event]]) -> None:
        for channel, event in messages:
            await self.publish(channel, event)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(SUBSCRIBER_BUFFER)
        self._subscribers.setdefault(channel, set()).add(queue)

        async def events() -> AsyncIterator[Event]:
            while True:
                yield await queue.get()

        try:
            yield events()
        finally:
            subscribers = self._subscribers.get(channel, set())
            subscribers.discard(queue)
            if not subscribers:
                self._subscribers.pop(channel, None)

    async def close(self) -> None:
        self._subscribers.clear()
