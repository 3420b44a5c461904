"""Health, readiness and metrics of a realtime process, on its WebSocket port.

The websockets server answers plain HTTP requests from its ``process_request`` hook, so
``GET /healthz``, ``/readyz`` and ``/metrics`` need no second port: they are answered before
the handshake and never become WebSocket connections. Readiness checks the database (tokens,
the change log) and Redis when configured (the bus); realtime never reads blobs.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from postroom.health import Readiness
from postroom.metrics import CONTENT_TYPE, exposition
from storage.registry import Storage

__all__ = ["HEALTH_PATHS", "HealthRoutes"]

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class HealthRoutes:
    def __init__(self, store: Storage) -> None:
        self.readiness = Readiness(store, blobs=False)

    async def respond(self, connection: ServerConnection, request: Request) -> Response | None:
        """The answer to a health request; None for anything else (the WebSocket path)."""
        path = urlsplit(request.path).path
        if path not in HEALTH_PATHS:
            return None
        if path == "/healthz":
            return _response(connection, HTTPStatus.OK, "application/json", '{"status":"ok"}')
        if path == "/readyz":
            report = await self.readiness.check()
            status = HTTPStatus.OK if report.ready else HTTPStatus.SERVICE_UNAVAILABLE
            return _response(connection, status, "application/json", json.dumps(report.body()))
        return _response(connection, HTTPStatus.OK, CONTENT_TYPE, exposition().decode())

    async def close(self) -> None:
        await self.readiness.close()


def _response(
    connection: ServerConnection, status: HTTPStatus, content_type: str, body: str
) -> Response:
    response = connection.respond(status, body)
    del response.headers["Content-Type"]  # respond() says text/plain; Headers is a multidict
    response.headers["Content-Type"] = content_type
    return response
