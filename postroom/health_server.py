"""The small HTTP server of roles that speak no HTTP themselves: health and metrics.

smtp-in, the processors and smtp-out listen on ``POSTROOM_HEALTH_PORT`` (0 turns it off) for

- ``GET /healthz``: 200 while the process runs its event loop (liveness);
- ``GET /readyz``: 200 when every backend check passes, else 503; JSON naming each check
  (:mod:`postroom.health`);
- ``GET /metrics``: the Prometheus text format (:mod:`postroom.metrics`), queue gauges read
  from the database first.

``postroom up`` runs it once for the whole process, so one port covers every role there.
It is a few lines over asyncio streams rather than a web framework: three fixed routes, one
request per connection, bounded reads, nothing a probe or a scraper needs more.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable

from postroom.errors import ConfigurationError
from postroom.health import Readiness
from postroom.metrics import CONTENT_TYPE, exposition
from postroom.queue_gauges import QueueGauges
from storage.registry import Storage

__all__ = ["HTTP_ROLES", "HealthServer", "health_server_for"]

log = logging.getLogger(__name__)

REQUEST_SECONDS = 5.0
MAX_HEAD = 8192
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    """Health and metrics for the roles of this process, on ``settings.health_port``."""

    name = "health"

    def __init__(self, store: Storage, roles: Iterable[str]) -> None:
        self.store = store
        roles = list(roles)
        self.readiness = Readiness(store)
        self.queue_gauges = QueueGauges(store, roles)
        self._server: asyncio.Server | None = None

    async def start(self) -> list[str]:
        settings = self.store.settings
        try:
            self._server = await asyncio.start_server(
                self._serve, settings.listen_address, settings.health_port
            )
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve health and metrics on {settings.listen_address}:"
                f"{settings.health_port} ({exc.strerror or exc}); free the port or choose "
                "another with POSTROOM_HEALTH_PORT (0 turns it off)"
            ) from exc
        port = self._server.sockets[0].getsockname()[1]
        return [f"http://{settings.listen_address}:{port} (/healthz, /readyz, /metrics)"]

    async def stop(self, grace: float) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.readiness.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_SECONDS)
            status, content_type, body = await self._answer(head)
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client that sent no complete request head in time gets nothing
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        if len(head) > MAX_HEAD:
            return 404, "text/plain", b"request too large\n"
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if path not in ("/healthz", "/readyz", "/metrics"):
            return 404, "text/plain", b"this port serves /healthz, /readyz and /metrics\n"
        if method != "GET":
            return 405, "text/plain", b"use GET\n"
        if path == "/healthz":
            return 200, "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            report = await self.readiness.check()
            return (
                200 if report.ready else 503,
                "application/json",
                json.dumps(report.body()).encode(),
            )
        await self.queue_gauges.refresh()
        return 200, CONTENT_TYPE, exposition()


HTTP_ROLES = frozenset({"gateway", "realtime"})
"""Roles that answer health and metrics on their own HTTP port."""


def health_server_for(store: Storage, roles: Iterable[str]) -> HealthServer | None:
    """The health server this process needs: one if any role has no HTTP port of its own and
    ``POSTROOM_HEALTH_PORT`` is not 0."""
    roles = list(roles)
    if store.settings.health_port == 0 or all(role in HTTP_ROLES for role in roles):
        return None
    return HealthServer(store, roles)
