"""The WebSocket server: authenticate, catch up from the change log, then push live events.

The order of a connection's start is what makes catch-up exact: subscribe to the user's events
first, then read the change log, then send live events, skipping those with a ``seq`` already
sent. Nothing committed after the log was read can be missed (the subscription was already
listening) and nothing is sent twice (``seq`` is the user's, gapless and ordered).

A live event whose ``seq`` jumps ahead of the last one sent means some were lost on the way
(pub/sub keeps nothing during a Redis restart, and two transactions may publish out of order);
the gap is read from the change log before the event is sent. The same happens when a slow
client's bounded :class:`~realtime.outbox.Outbox` overflows.

Close codes: 4400 a malformed hello or ``since``, 4401 no valid token within 5 s, 4429 too many
connections of one user on this process, 1011 events unavailable (the bus failed), 1013 the
database did not answer (retry shortly), 1001 the server is stopping (reconnect, to another
process if there is one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy.exc import SQLAlchemyError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from postroom.errors import AuthenticationFailed, ChangesExpired, InvalidInput, StorageError
from postroom.metrics import WEBSOCKET_CONNECTIONS
from realtime.health import HealthRoutes
from realtime.hub import Hub, frame
from realtime.origins import Origins
from realtime.outbox import Outbox
from storage.registry import Storage
from storage.repositories.changes import changes_since, current_seq
from storage.repositories.tokens import authenticate

__all__ = ["RealtimeServer"]

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 5.0
REPLAY_PAGE = 500
MAX_CLIENT_MESSAGE = 4096  # clients send one hello; nothing big is ever expected from them
LISTEN_BACKLOG = 4096  # a reconnect storm after a restart; the kernel caps it at somaxconn

BAD_REQUEST = 4400
UNAUTHORIZED = 4401
TOO_MANY = 4429
UNAVAILABLE = 1011
TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class Hello:
    token: str | None
    since: int | None


def _since(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InvalidInput("since must be the last change sequence number you received", field="since")


class RealtimeServer:
    name = "realtime"

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.settings = store.settings
        self.hub = Hub(store.bus)
        self.origins = Origins(store.settings)
        self.health = HealthRoutes(store)  # /healthz, /readyz, /metrics on the same port
        self._server: Server | None = None

    async def start(self) -> list[str]:
        settings = self.settings
        _raise_open_files_limit()
        self._server = await serve(
            self._handle,
            settings.listen_address,
            settings.realtime_port,
            process_request=self._check_request,
            compression=None,  # frames are small; a zlib context per client costs ~100 KB
            max_size=MAX_CLIENT_MESSAGE,
            max_queue=4,
            ping_interval=settings.realtime_ping_interval_seconds,
            ping_timeout=settings.realtime_ping_timeout_seconds,
            backlog=LISTEN_BACKLOG,
        )
        return [f"ws://{settings.listen_address}:{settings.realtime_port}/ws (realtime)"]

    async def stop(self, grace: float) -> None:
        if self._server is None:
            return
        self._server.close()  # closes every client with 1001 so it reconnects elsewhere
        try:
            await asyncio.wait_for(self._server.wait_closed(), grace)
        except TimeoutError:
            log.warning("realtime: some connections did not close within %.0f s", grace)
        await self.hub.close()
        await self.health.close()

    # -- the handshake ----------------------------------------------------------------------

    async def _check_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if (answer := await self.health.respond(connection, request)) is not None:
            return answer
        if urlsplit(request.path).path != "/ws":
            return connection.respond(HTTPStatus.NOT_FOUND, "the WebSocket endpoint is /ws\n")
        origin = request.headers.get("Origin")
        if not self.origins.accepts(origin):
            return connection.respond(
                HTTPStatus.FORBIDDEN,
                f"origin {origin} may not connect here; it must be listed in "
                "POSTROOM_REALTIME_ALLOWED_ORIGINS\n",
            )
        return None

    async def _hello(self, connection: ServerConnection) -> Hello:
        assert connection.request is not None
        query = parse_qs(urlsplit(connection.request.path).query)
        since = _since(query["since"][0]) if "since" in query else None
        if "token" in query:
            return Hello(query["token"][0], since)
        try:
            first = json.loads(await asyncio.wait_for(connection.recv(), HELLO_TIMEOUT))
        except (TimeoutError, ValueError):
            return Hello(None, None)
        if not isinstance(first, dict) or first.get("type") != "hello":
            return Hello(None, None)
        token = first.get("token")
        return Hello(token if isinstance(token, str) else None, _since(first.get("since", since)))

    async def _user_id(self, token: str | None) -> str | None:
        if token is None:
            return None
        try:
            async with self.store.db.session() as session:
                return (await authenticate(session, token)).id
        except AuthenticationFailed:
            return None

    # -- one connection ---------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        WEBSOCKET_CONNECTIONS.inc()
        try:
            await self._connection(connection)
        except (SQLAlchemyError, OSError) as exc:
            # The database is down or its pool exhausted: a retry later may succeed.
            log.warning("realtime: database unavailable for a client: %s", exc)
            await connection.close(TRY_AGAIN_LATER, "the database is busy; reconnect shortly")
        finally:
            WEBSOCKET_CONNECTIONS.dec()

    async def _connection(self, connection: ServerConnection) -> None:
        try:
            hello = await self._hello(connection)
        except InvalidInput as exc:
            await connection.close(BAD_REQUEST, exc.message)
            return
        except ConnectionClosed:
            return
        user_id = await self._user_id(hello.token)
        if user_id is None:
            await connection.close(UNAUTHORIZED, "authenticate with ?token= or a hello message")
            return
        cap = self.settings.realtime_max_connections_per_user
        outbox = Outbox(self.settings.realtime_send_queue, connection)
        if not self.hub.admit(user_id, outbox, cap):
            await connection.close(TOO_MANY, f"at most {cap} connections per user; close one")
            return
        closed = asyncio.ensure_future(connection.wait_closed())
        closed.add_done_callback(outbox.close)
        try:
            await self.hub.subscribed(user_id)
            await self._serve(connection, user_id, hello.since, outbox)
            await connection.close(UNAVAILABLE, "events stopped on this server; reconnect")
        except StorageError as exc:
            log.warning("realtime: no events for a client: %s", exc)
            await connection.close(UNAVAILABLE, "events are unavailable for now; reconnect")
        except ConnectionClosed:
            pass
        finally:
            self.hub.leave(user_id, outbox)
            closed.cancel()

    async def _serve(
        self, connection: ServerConnection, user_id: str, since: int | None, outbox: Outbox
    ) -> None:
        if since is None:
            last = await self._latest(user_id)
        else:
            last = await self._replay(connection, user_id, since)
        await connection.send(json.dumps({"type": "ready", "seq": last}))
        outbox.last = last
        while not outbox.closed:
            frames = outbox.take()
            if frames is None:  # fell too far behind: the log has everything it missed
                outbox.last = await self._replay(connection, user_id, outbox.last)
                continue
            if not frames:
                # Caught up: from here the hub writes the next frames straight to the socket
                # (set with no await after take(), so no frame can slip in between).
                outbox.live = True
                await outbox.wake.wait()
                continue
            for seq, data in frames:
                if seq <= outbox.last:
                    continue  # already replayed from the log
                if seq > outbox.last + 1:
                    outbox.last = await self._replay(connection, user_id, outbox.last)
                    if seq <= outbox.last:
                        continue
                await connection.send(data, text=True)
                outbox.last = seq

    async def _latest(self, user_id: str) -> int:
        async with self.store.db.session() as session:
            return await current_seq(session, user_id)

    async def _replay(self, connection: ServerConnection, user_id: str, since: int) -> int:
        """Send every logged change after ``since`` in order; the last seq sent.

        When the log no longer reaches back that far, send ``resync`` with the latest seq: the
        client reloads its state and continues from there.
        """
        last = since
        while True:
            try:
                async with self.store.db.session() as session:
                    events = await changes_since(session, user_id, last, limit=REPLAY_PAGE)
            except ChangesExpired:
                latest = await self._latest(user_id)
                await connection.send(json.dumps({"type": "resync", "seq": latest}))
                return latest
            for event in events:
                await connection.send(frame(event))
                last = event.seq
            if len(events) < REPLAY_PAGE:
                return last


def _raise_open_files_limit() -> None:
    """Each client holds a file descriptor: lift the soft limit to the hard one, and say so.

    The usual soft limit of 1024 would refuse clients long before memory or CPU run short.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("realtime: could not raise the open files limit from %d: %s", soft, exc)
            hard = soft
    log.info(
        "realtime: open files limit %d (was %d): at most about that many clients; raise the "
        "hard limit (ulimit -Hn, LimitNOFILE=) for more",
        hard,
        soft,
    )
