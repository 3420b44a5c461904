"""Long polling: the realtime events for clients that cannot hold a WebSocket open.

``GET /events?since=SEQ&timeout=30`` answers at once when changes after ``SEQ`` are logged, else
as soon as one is committed, else with an empty list when ``timeout`` runs out; the client asks
again with the ``latest`` it got. Events have the shape the WebSocket pushes,
``{"type", "seq", ...}``. Like realtime it subscribes to the user's events first and reads the
log second, so a change committed in between is not slept through; 410 (``resync``) when the
log no longer reaches back to ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from gateway.deps import CurrentUser, Store
from postroom.events import Event, user_channel
from storage.registry import Storage
from storage.repositories.changes import changes_since, current_seq

router = APIRouter(prefix="/events", tags=["events"])

MAX_TIMEOUT = 60
PAGE = 500


class EventPage(BaseModel):
    events: list[dict[str, Any]] = Field(
        description='Oldest first, each `{"type", "seq", ...}` as the WebSocket sends it.'
    )
    latest: int = Field(description="Ask again with this as `since`.")


def _shape(event: Event) -> dict[str, Any]:
    return {"type": event.type, "seq": event.seq, **event.data}


async def _logged(store: Storage, user_id: str, since: int) -> list[Event]:
    async with store.db.session() as session:
        return await changes_since(session, user_id, since, limit=PAGE)


@router.get(
    "",
    response_model=EventPage,
    responses={410: {"description": "`since` is too old or unknown: load your state again."}},
)
async def poll_events(
    store: Store,
    user: CurrentUser,
    since: Annotated[
        int | None,
        Query(ge=0, description="The last seq you have; leave out to wait from now on."),
    ] = None,
    wait: Annotated[
        float,
        Query(alias="timeout", ge=0, le=MAX_TIMEOUT, description="Seconds to wait for an event."),
    ] = 30,
) -> EventPage:
    async with store.bus.subscribe(user_channel(user.id)) as live:
        if since is None:
            async with store.db.session() as session:
                since = await current_seq(session, user.id)
        events = await _logged(store, user.id, since)
        if not events and wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    async for event in live:
                        if event.seq > since:
                            break
            events = await _logged(store, user.id, since)
    return EventPage(events=[_shape(e) for e in events], latest=events[-1].seq if events else since)
