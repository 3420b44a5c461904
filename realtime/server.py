"""The WebSocket server: authenticate, subscribe to the user's bus channel, forward events.

A client authenticates with ``/ws?token=TOKEN`` or a first message
``{"type": "hello", "token": "TOKEN"}`` within 5 seconds; otherwise it is closed with code 4401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from postroom.errors import AuthenticationFailed
from postroom.events import Event, user_channel
from storage.db.models import User
from storage.registry import Storage
from storage.repositories.tokens import authenticate

__all__ = ["RealtimeServer"]

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 5.0
UNAUTHORIZED = 4401


def frame(event: Event) -> str:
    return json.dumps({"type": event.type, "seq": event.seq, **event.data}, default=str)


class RealtimeServer:
    name = "realtime"

    def __init__(self, store: Storage) -> None:
        self.store = store
        self._server: Server | None = None

    async def start(self) -> list[str]:
        settings = self.store.settings
        self._server = await serve(
            self._handle,
            settings.listen_address,
            settings.realtime_port,
            process_request=self._only_ws_path,
        )
        return [f"ws://{settings.listen_address}:{settings.realtime_port}/ws (realtime)"]

    async def stop(self, grace: float) -> None:
        if self._server is None:
            return
        self._server.close()  # closes every client with 1001 so it reconnects elsewhere
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), grace)

    @staticmethod
    def _only_ws_path(connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != "/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "the WebSocket endpoint is /ws\n")
        return None

    async def _token(self, connection: ServerConnection) -> str | None:
        assert connection.request is not None
        query = parse_qs(urlsplit(connection.request.path).query)
        if "token" in query:
            return query["token"][0]
        try:
            first = json.loads(await asyncio.wait_for(connection.recv(), HELLO_TIMEOUT))
        except (TimeoutError, ValueError, ConnectionClosed):
            return None
        if isinstance(first, dict) and first.get("type") == "hello":
            token = first.get("token")
            return token if isinstance(token, str) else None
        return None

    async def _user(self, connection: ServerConnection) -> User | None:
        token = await self._token(connection)
        if token is None:
            return None
        try:
            async with self.store.db.session() as session:
                return await authenticate(session, token)
        except AuthenticationFailed:
            return None

    async def _handle(self, connection: ServerConnection) -> None:
        user = await self._user(connection)
        if user is None:
            await connection.close(UNAUTHORIZED, "authenticate with ?token= or a hello message")
            return
        async with self.store.bus.subscribe(user_channel(user.id)) as events:
            await connection.send(json.dumps({"type": "ready", "seq": user.change_seq}))
            forward = asyncio.create_task(self._forward(connection, events))
            await connection.wait_closed()
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forward

    @staticmethod
    async def _forward(connection: ServerConnection, events: AsyncIterator[Event]) -> None:
        async for event in events:
            await connection.send(frame(event))
