"""Transactions that record changes and publish them only after they commit.

:func:`record_change` appends to the user's change log inside the caller's transaction;
:func:`transaction` publishes the collected events once the commit has succeeded. This is the
only way events are published, so no subscriber ever hears of a change that was rolled back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.events import Event, user_channel
from storage.db.models import Change, User
from storage.registry import Storage

__all__ = ["record_change", "transaction"]

_PENDING = "postroom.pending_events"


@asynccontextmanager
async def transaction(store: Storage) -> AsyncIterator[AsyncSession]:
    async with store.db.session() as session:
        async with session.begin():
            yield session
        events: list[Event] = session.info.pop(_PENDING, [])
    for event in events:
        await store.bus.publish(user_channel(event.user_id), event)


async def record_change(
    session: AsyncSession, user_id: str, kind: str, payload: dict[str, Any]
) -> Event:
    """Append a change for ``user_id``; the row lock on the user orders concurrent changes."""
    seq = await session.scalar(
        update(User)
        .where(User.id == user_id)
        .values(change_seq=User.change_seq + 1)
        .returning(User.change_seq)
    )
    if seq is None:
        raise LookupError(f"user {user_id} vanished while recording a change")
    session.add(Change(user_id=user_id, seq=seq, kind=kind, payload=payload))
    event = Event(type=kind, user_id=user_id, seq=seq, data=payload)
    session.info.setdefault(_PENDING, []).append(event)
    return event
