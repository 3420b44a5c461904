"""The FastAPI application: API routers under ``/api/v1``, health, and the web UI at ``/``."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

import postroom
from gateway import observability
from gateway.errors import install_error_handlers
from gateway.observability import LatencyMiddleware
from gateway.rate_limits import RateLimits, read_limit
from gateway.routes import (
    admin,
    attachments,
    auth,
    changes,
    client_config,
    contacts,
    drafts,
    events,
    keys,
    mailboxes,
    messages,
    queue,
    search,
    send,
    suppressions,
    templates,
    threads,
)
from gateway.web_ui import WebUI
from postroom.health import Readiness
from storage.registry import Storage

__all__ = ["create_app"]

API = "/api/v1"
WEB_DIST = Path(__file__).resolve().parent.parent / "web" / "dist"

_NO_UI = """<!doctype html><title>postroom</title>
<p>postroom is running. The web UI has not been built here; the API is documented at
<a href="/docs">/docs</a>.</p>"""


def create_app(store: Storage) -> FastAPI:
    app = FastAPI(
        title="postroom",
        version=postroom.__version__,
        description="Send, list, read and search mail. Authenticate with a bearer token from "
        "`POST /api/v1/auth/token`.",
    )
    app.state.store = store
    install_error_handlers(app)

    app.state.rate_limits = RateLimits(store.settings)
    reads = [Depends(read_limit)]  # GETs of signed-in routes spend the read budget

    # Each router straight onto the app under the prefix: FastAPI matches a request level by
    # level, so one router in between (an ``/api/v1`` APIRouter) costs on every request. Routes
    # are tried in order, so the messages (the list a mail client asks for most) and sending
    # (the busiest write) come first.
    app.include_router(messages.router, prefix=API, dependencies=reads)
    app.include_router(send.router, prefix=API)  # its GET spends the read budget itself
    for module in (auth, keys, admin, mailboxes, attachments, threads, changes, search):
        app.include_router(module.router, prefix=API, dependencies=[] if module is auth else reads)
    app.include_router(client_config.router, prefix=API)  # public: read before signing in
    app.include_router(contacts.router, prefix=API, dependencies=reads)
    app.include_router(events.router, prefix=API, dependencies=reads)  # long polling: one read
    for module in (drafts, templates, suppressions, queue):
        app.include_router(module.router, prefix=API, dependencies=reads)

    @app.get("/healthz", tags=["health"], include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.state.readiness = Readiness(store)
    app.include_router(observability.router)  # /readyz, /metrics: no auth, no rate limit
    app.add_middleware(LatencyMiddleware)

    if WEB_DIST.is_dir():
        app.mount("/", WebUI(WEB_DIST, store.settings), name="web")
    else:

        @app.get("/", include_in_schema=False)
        async def index() -> HTMLResponse:
            return HTMLResponse(_NO_UI)

    return app
