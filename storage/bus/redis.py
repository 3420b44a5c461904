"""The event bus on Redis pub/sub (production, when ``POSTROOM_REDIS_URL`` is set).

Each process holds ONE subscriber connection, whatever the number of local subscribers: the
first local subscriber of a channel SUBSCRIBEs it, the last one to leave UNSUBSCRIBEs it, and a
reader task fans every message out to the local subscribers' bounded queues. A realtime
process with ten thousand WebSockets therefore costs Redis one connection, not ten thousand.

Channels are ``<prefix>bus:<channel>``, so installs (and tests) sharing a Redis do not hear each
other. ``subscribe`` returns only once Redis has confirmed the SUBSCRIBE: a caller may
subscribe, then read the change log, and know that anything committed after that read reaches
it live.

Pub/sub keeps nothing: while the connection is down (a Redis restart, a network cut) messages
are lost. The reader reconnects with backoff and subscribes every channel again; subscribers
notice the hole from the ``seq`` of the next event and read what they missed from the change
log. Publishing is best effort for the same reason: the change is committed and logged already,
so a failed PUBLISH is logged, not raised into the code that committed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from postroom.errors import StorageError
from postroom.events import Event

__all__ = ["RedisBus"]

log = logging.getLogger(__name__)

SUBSCRIBER_BUFFER = 1000
SUBSCRIBE_TIMEOUT = 10.0
RECONNECT_FIRST = 0.1
RECONNECT_MAX = 5.0


class RedisBus:
    def __init__(self, url: str, prefix: str) -> None:
        self._prefix = f"{prefix}bus:"
        self._publisher = aioredis.Redis.from_url(url)
        # Failures surface to the reader loop, which reconnects and subscribes everything again
        # itself; redis-py's own silent retries would hide the hole from it.
        self._subscriber = aioredis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            client_name=f"{prefix}bus",
            socket_keepalive=True,
        )
        self._local: dict[str, set[asyncio.Queue[Event]]] = {}
        # One future per SUBSCRIBE sent, resolved by its confirmation (they come back in order).
        self._confirmations: dict[str, deque[asyncio.Future[None]]] = {}
        self._pubsub: PubSub | None = None
        self._connected = asyncio.Event()
        self._lock = asyncio.Lock()  # one command at a time on the subscriber connection
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def control_channel(self) -> str:
        """Always subscribed, so the connection is in pub/sub mode even with no subscriber."""
        return self._prefix.rstrip(":")

    async def publish(self, channel: str, event: Event) -> None:
        try:
            await self._publisher.publish(self._prefix + channel, event.to_json())
        except RedisError as exc:
            log.warning("could not publish %s #%d on %s: %s", event.type, event.seq, channel, exc)

    async def publish_many(self, messages: Sequence[tuple[str, Event]]) -> None:
        if not messages:
            return
        try:
            async with self._publisher.pipeline(transaction=False) as pipe:
                for channel, event in messages:
                    pipe.publish(self._prefix + channel, event.to_json())
                await pipe.execute()
        except RedisError as exc:
            log.warning("could not publish %d events: %s", len(messages), exc)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[Event]]:
        name = self._prefix + channel
        queue: asyncio.Queue[Event] = asyncio.Queue(SUBSCRIBER_BUFFER)
        subscribers = self._local.setdefault(name, set())
        first = not subscribers
        subscribers.add(queue)

        async def events() -> AsyncIterator[Event]:
            while True:
                yield await queue.get()

        try:
            await self._subscribe(name, first)
            yield events()
        finally:
            await self._leave(name, queue)

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._drop_connection()
        await self._publisher.aclose()
        await self._subscriber.aclose()
        self._local.clear()

    # -- subscribing ------------------------------------------------------------------------

    async def _subscribe(self, name: str, first: bool) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read(), name="redis-bus-reader")
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                while True:
                    await self._connected.wait()
                    if not first and self._confirmed(name):
                        return
                    try:
                        confirmed = await self._send_subscribe(name)
                        await confirmed
                        return
                    except (RedisError, OSError, ConnectionError):
                        continue  # the reader reconnects; try again once it has
        except TimeoutError:
            raise StorageError(
                f"Redis did not confirm a subscription within {SUBSCRIBE_TIMEOUT:.0f} s; "
                "check that POSTROOM_REDIS_URL answers"
            ) from None

    async def _send_subscribe(self, name: str) -> asyncio.Future[None]:
        async with self._lock:
            if self._pubsub is None:
                raise ConnectionError("the Redis connection was lost")
            confirmed = asyncio.get_running_loop().create_future()
            pending = self._confirmations.setdefault(name, deque())
            pending.append(confirmed)
            try:
                await self._pubsub.subscribe(name)
            except BaseException:
                with contextlib.suppress(ValueError):
                    pending.remove(confirmed)
                if confirmed.done() and not confirmed.cancelled():
                    confirmed.exception()  # failed by a dropped connection: retrieved here
                confirmed.cancel()
                raise
            return confirmed

    def _confirmed(self, name: str) -> bool:
        """Whether this connection is subscribed to ``name`` with no SUBSCRIBE still pending."""
        assert self._pubsub is not None
        return name.encode() in self._pubsub.channels and not self._confirmations.get(name)

    async def _leave(self, name: str, queue: asyncio.Queue[Event]) -> None:
        subscribers = self._local.get(name)
        if subscribers is None:
            return
        subscribers.discard(queue)
        if subscribers:
            return
        del self._local[name]
        async with self._lock:
            if name in self._local or self._pubsub is None or not self._connected.is_set():
                return  # someone subscribed again meanwhile, or a reconnect will not restore it
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(name)

    # -- reading ----------------------------------------------------------------------------

    async def _read(self) -> None:
        delay = RECONNECT_FIRST
        while not self._closed:
            try:
                pubsub = await self._connect()
                if delay > RECONNECT_FIRST:
                    log.info("event bus: reconnected to Redis; %d channels", len(self._local))
                delay = RECONNECT_FIRST
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._dispatch(message)
            except (RedisError, OSError) as exc:
                log.warning("event bus: Redis connection lost (%s); retrying in %.1f s", exc, delay)
                await self._drop_connection()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    async def _connect(self) -> PubSub:
        pubsub = self._subscriber.pubsub()
        async with self._lock:
            try:
                await pubsub.subscribe(self.control_channel, *self._local)
            except BaseException:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            self._pubsub = pubsub
            self._connected.set()
        return pubsub

    async def _drop_connection(self) -> None:
        self._connected.clear()
        for pending in self._confirmations.values():
            for confirmed in pending:
                if not confirmed.done():
                    confirmed.set_exception(ConnectionError("the Redis connection was lost"))
        self._confirmations.clear()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        name = message["channel"].decode()
        if kind == "subscribe":
            pending = self._confirmations.get(name)
            if pending:
                confirmed = pending.popleft()
                if not confirmed.done():
                    confirmed.set_result(None)
                if not pending:
                    del self._confirmations[name]
            return
        if kind != "message":
            return
        try:
            event = Event.from_json(message["data"])
        except (ValueError, KeyError, TypeError):
            log.warning("event bus: ignoring a malformed message on %s", name)
            return
        for queue in self._local.get(name, ()):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("subscriber on %s is %d events behind; dropping", name, queue.qsize())
