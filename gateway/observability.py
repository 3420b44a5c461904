"""The gateway's health, readiness and metrics routes, and the request latency histogram.

``/healthz`` (liveness, in ``gateway.app``), ``/readyz`` and ``/metrics`` sit outside
``/api/v1``: no authentication, no rate limit, not in the OpenAPI schema. They say little, but
keep ``/metrics`` from the public at the proxy (``deploy/README.md``).

:class:`LatencyMiddleware` is plain ASGI, not Starlette's ``BaseHTTPMiddleware`` (which runs
every request through an extra task and memory stream): it wraps ``send`` to catch the status
and observes one histogram sample when the response is done. The label is the route template
the router matched (``/api/v1/messages/{message_id}``), never the raw path, so the number of
series stays bounded; requests no route matched share ``<unmatched>``.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Histogram
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postroom.health import Readiness
from postroom.metrics import CONTENT_TYPE, HTTP_LATENCY, exposition

__all__ = ["LatencyMiddleware", "router"]

UNMATCHED = "<unmatched>"

router = APIRouter(include_in_schema=False)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    report = await readiness.check()
    return JSONResponse(report.body(), status_code=200 if report.ready else 503)


@router.get("/metrics")
async def metrics() -> Response:
    return Response(content=exposition(), media_type=CONTENT_TYPE)


def route_template(scope: Scope) -> str:
    """The matched route's template with the prefix of the routers it was included under.

    FastAPI hands over the route as declared (``/messages/{message_id}``); the prefixes
    (``/api/v1``) are the leading segments of the request path that the template does not
    cover, and contain no parameters, so taking them from the path keeps the label bounded.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    if isinstance(route, Mount):
        return f"{route.path}/{{path}}"
    template = str(getattr(route, "path", ""))
    if ":path}" in template:  # matches several segments: the count below would not hold
        return template
    segments = scope["path"].split("/")
    return "/".join(segments[: len(segments) - template.count("/")]) + template


class LatencyMiddleware:
    """Observes ``postroom_http_request_duration_seconds`` for every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The labelled series, looked up once each: ``labels()`` validates and locks on every
        # call, which costs more than the observation itself.
        self._series: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            elapsed = time.perf_counter() - began
            key = (scope["method"], route_template(scope), status)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = HTTP_LATENCY.labels(key[0], key[1], str(status))
            series.observe(elapsed)
