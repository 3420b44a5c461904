"""The event bus: how a change committed in one role reaches subscribers in others.

Delivery is best effort and in order per channel; a subscriber that falls behind loses events
and catches up from the change log, which is why every event carries its ``seq``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from postroom.events import Event

__all__ = ["EventBus"]


class EventBus(Protocol):
    async def publish(self, channel: str, event: Event) -> None: ...

    async def publish_many(self, messages: Sequence[tuple[str, Event]]) -> None:
        """``publish`` for each (channel, event) in order, at the cost of one (a batch of
        sends commits dozens of events at once)."""
        ...

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """Events published on ``channel`` from now until the context exits."""
        ...

    async def close(self) -> None: ...
