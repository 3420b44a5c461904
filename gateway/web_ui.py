"""Serving the built web UI (``web/dist``) at ``/``, with a strict Content-Security-Policy.

The UI is a single-page app: a deep link such as ``/mail/inbox/ID`` or ``/search?q=`` has no
file behind it, so the app's own paths (``APP_PATHS``) get ``index.html`` and the app draws the
view from the URL. Nothing else falls back: an unknown ``/api/...`` path stays a JSON 404, and
a missing ``/assets/x.js`` must not come back as HTML.

Every answer from here carries the CSP of the app shell. Scripts only from this origin (no
inline script, no eval); connections only to this origin and the realtime WebSocket port on
the host the browser used. Message bodies render in ``srcdoc`` iframes, which inherit this
policy on top of their own ``<meta>`` one, so ``style-src`` allows inline styles and
``img-src`` allows remote images: the iframe's own policy is what keeps remote images out
until the reader presses "Show images". The API and ``/docs`` are not served from here and
keep their own headers.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from postroom.settings import Settings

__all__ = ["APP_PATHS", "WebUI", "content_security_policy"]

_HOST = re.compile(r"^[A-Za-z0-9.\-]+$|^\[[0-9A-Fa-f:.]+\]$")
APP_PATHS = ("mail", "search")


def _host_name(host_header: str | None) -> str | None:
    """The host part of a Host header, if it is a plain name or address (never a CSP token)."""
    if not host_header:
        return None
    if host_header.startswith("["):
        host = host_header.split("]", 1)[0] + "]"
    else:
        host = host_header.split(":", 1)[0]
    return host if _HOST.match(host) else None


def content_security_policy(settings: Settings, host_header: str | None) -> str:
    """The shell's policy; ``connect-src`` names the realtime port on the host asked for."""
    realtime = ""
    host = _host_name(host_header)
    if settings.realtime_public_url is not None:  # validated by its settings pattern
        realtime = f" {settings.realtime_public_url}"
    elif host is not None:
        port = settings.realtime_port
        realtime = f" ws://{host}:{port} wss://{host}:{port}"
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: https: http:",
            "font-src 'self'",
            f"connect-src 'self'{realtime}",
            "frame-src 'self' about:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def _is_page(path: str) -> bool:
    """A path the app draws itself (a deep link), as opposed to a file or another service."""
    parts = PurePosixPath(path).parts
    return bool(parts) and parts[0] in APP_PATHS


class WebUI(StaticFiles):
    """``web/dist`` as static files, ``index.html`` for deep links, the shell's headers on all."""

    def __init__(self, directory: Path, settings: Settings) -> None:
        super().__init__(directory=directory, html=True)
        self.settings = settings

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or not _is_page(path):
                raise
            response = await super().get_response("index.html", scope)
        request = Request(scope)
        headers = response.headers
        headers["Content-Security-Policy"] = content_security_policy(
            self.settings, request.headers.get("host")
        )
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["X-Frame-Options"] = "DENY"
        if path.startswith("assets/"):  # file names carry a content hash
            headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            headers["Cache-Control"] = "no-cache"
        return response
