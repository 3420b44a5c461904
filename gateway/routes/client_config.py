"""What a browser needs to know before signing in: where realtime listens, the undo window.

Public (no token): the page loads it first, and nothing in it is secret. The WebSocket URL is
built by the browser from the host it already uses plus this port and path, so one answer
serves every name the platform is reached by (localhost, 127.0.0.1, its hostname). Behind a
proxy that serves the WebSocket on the page's own origin (the Kubernetes Ingress routes ``/ws``),
``POSTROOM_REALTIME_PUBLIC_URL`` names it and the browser uses that instead.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from gateway.deps import Store

__all__ = ["ClientConfig", "router"]

router = APIRouter(tags=["client"])

REALTIME_PATH = "/ws"


class RealtimeEndpoint(BaseModel):
    port: int = Field(description="The WebSocket server's port on the host serving this page.")
    path: str = Field(description="Its path; authenticate with ?token= and resume with ?since=.")
    url: str | None = Field(
        default=None,
        description="Set when a proxy serves the WebSocket (POSTROOM_REALTIME_PUBLIC_URL): "
        "connect here instead of to port and path on the page's host.",
        examples=["wss://mail.example.com/ws"],
    )


class ClientConfig(BaseModel):
    realtime: RealtimeEndpoint
    send_undo_seconds: float = Field(
        description="How long after POST /send a DELETE /send/{id} can still cancel it."
    )
    max_message_size: int = Field(description="Largest message, attachments included, in bytes.")


@router.get("/client-config", response_model=ClientConfig)
async def client_config(store: Store) -> ClientConfig:
    settings = store.settings
    return ClientConfig(
        realtime=RealtimeEndpoint(
            port=settings.realtime_port, path=REALTIME_PATH, url=settings.realtime_public_url
        ),
        send_undo_seconds=settings.send_undo_seconds,
        max_message_size=settings.max_message_size,
    )
