"""The FastAPI application: API routers under ``/api/v1``, health, and the web UI at ``/``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
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

    api = APIRouter(prefix="/api/v1")
    for module in (auth, keys, admin, mailboxes, messages, attachments, threads, changes, search):
        api.include_router(module.router, dependencies=[] if module is auth else reads)
    api.include_router(client_config.router)  # public: the page reads it before signing in
    api.include_router(contacts.router, dependencies=reads)
    api.include_router(events.router, dependencies=reads)  # long polling: one read per wait
    for module in (send, drafts, templates, suppressions, queue):
        api.include_router(module.router, dependencies=reads)
    app.include_router(api)

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
