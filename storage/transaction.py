"""Transactions that record changes and publish them only after they commit.

:func:`record_change` (:func:`record_changes` for several) appends to the user's change log
inside the caller's transaction; :func:`transaction` publishes the collected events once the
commit has succeeded. This is the only way events are published, so no subscriber ever hears
of a change that was rolled back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.events import Event, user_channel
from storage.db.models import Change, User
from storage.db.types import utcnow
from storage.registry import Storage

__all__ = ["record_change", "record_changes", "transaction"]

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
    (event,) = await record_changes(session, user_id, [(kind, payload)])
    return event


async def record_changes(
    session: AsyncSession, user_id: str, changes: Sequence[tuple[str, dict[str, Any]]]
) -> list[Event]:
    """Append several changes of ``user_id`` in order, with one bump of its ``change_seq``.

    One ``UPDATE ... RETURNING`` takes ``len(changes)`` consecutive seqs under the user's row
    lock and the rows go in with one flush, so a send logging a new message and its mailbox's
    counts costs two statements, not four.
    """
    if not changes:
        return []
    last = await session.scalar(
        update(User)
        .where(User.id == user_id)
        .values(change_seq=User.change_seq + len(changes))
        .returning(User.change_seq)
    )
    if last is None:
        raise LookupError(f"user {user_id} vanished while recording a change")
    first = last - len(changes) + 1
    events = [
        Event(type=kind, user_id=user_id, seq=seq, data=payload)
        for seq, (kind, payload) in enumerate(changes, start=first)
    ]
    now = utcnow()
    await session.execute(
        insert(Change),
        [
            {"user_id": user_id, "seq": e.seq, "kind": e.type, "payload": e.data, "created_at": now}
            for e in events
        ],
    )
    session.info.setdefault(_PENDING, []).extend(events)
    return events
