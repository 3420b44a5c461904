"""One bus subscription per online user per process, fanned out to that user's connections.

A user with five tabs open costs one subscription, and an event is encoded to JSON once, not
once per connection. The hub never waits for a connection: it writes the frame straight to
each connection that is idle and caught up, and drops it into the
:class:`~realtime.outbox.Outbox` of every other one, whose sender sends it in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection, broadcast

from postroom.events import Event, user_channel
from realtime.outbox import Outbox
from storage.bus import EventBus

__all__ = ["Hub", "frame"]

log = logging.getLogger(__name__)


def frame(event: Event) -> str:
    """The JSON a client receives for an event: ``{"type", "seq", ...payload}``."""
    return json.dumps({"type": event.type, "seq": event.seq, **event.data}, default=str)


def _fan_out(outboxes: set[Outbox], seq: int, data: bytes) -> None:
    """Write the frame now to every idle, caught-up connection; queue it for the others.

    One synchronous pass and one ``broadcast``: no task is woken for a connection that can take
    the frame at once, which is what keeps one event to ten thousand connections quick.
    """
    direct: list[ServerConnection] = []
    for outbox in list(outboxes):
        if outbox.takes_directly(seq):
            assert outbox.connection is not None
            direct.append(outbox.connection)
        else:
            outbox.offer((seq, data))
    if direct:
        broadcast(direct, data, text=True)


@dataclass(eq=False)
class _User:
    outboxes: set[Outbox] = field(default_factory=set)
    ready: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    task: asyncio.Task[None] | None = None


class Hub:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._users: dict[str, _User] = {}

    def connections(self, user_id: str) -> int:
        user = self._users.get(user_id)
        return len(user.outboxes) if user else 0

    def lagging(self, user_id: str) -> int:
        """How many of the user's connections fell behind and will be served from the log."""
        user = self._users.get(user_id)
        return sum(outbox.behind for outbox in user.outboxes) if user else 0

    def admit(self, user_id: str, outbox: Outbox, cap: int) -> bool:
        """Add a connection unless the user already holds ``cap`` of them here."""
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User()
            user.task = asyncio.create_task(self._listen(user_id, user), name=f"hub {user_id}")
        elif len(user.outboxes) >= cap:
            return False
        user.outboxes.add(outbox)
        return True

    async def subscribed(self, user_id: str) -> None:
        """Return once the user's events reach the hub; raises if the bus could not subscribe."""
        await asyncio.shield(self._users[user_id].ready)

    def leave(self, user_id: str, outbox: Outbox) -> None:
        user = self._users.get(user_id)
        if user is None:
            return
        user.outboxes.discard(outbox)
        if not user.outboxes:
            del self._users[user_id]
            if user.task is not None:
                user.task.cancel()

    async def close(self) -> None:
        users = list(self._users.values())
        self._users.clear()
        tasks = [user.task for user in users if user.task is not None]
        for user in users:
            user.ready.cancel()
            for outbox in user.outboxes:
                outbox.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _listen(self, user_id: str, user: _User) -> None:
        try:
            async with self.bus.subscribe(user_channel(user_id)) as events:
                user.ready.set_result(None)
                async for event in events:
                    _fan_out(user.outboxes, event.seq, frame(event).encode())
        except Exception as exc:
            log.warning("realtime: events of user %s stopped: %s", user_id, exc)
            if self._users.get(user_id) is user:
                del self._users[user_id]
            if not user.ready.done():
                user.ready.set_exception(exc)
                user.ready.exception()  # the joiners see it through subscribed()
            for outbox in user.outboxes:
                outbox.close()
