"""Reading the per-user change log: what changed after a sequence number.

The gateway's ``GET /changes``, the realtime catch-up and the long-poll fallback all read the log
through :func:`changes_since`, so they agree on what "too old" means: a client may continue from
``since`` only while every change after it is still kept. Otherwise it must resync.

Event kinds written to the log (by :func:`storage.transaction.record_change`):

- ``mail.new``       ``{"message": {id, mailbox, thread, from, subject, snippet, date, ...}}``
- ``mail.updated``   ``{"message": {id, mailbox, thread, seen, flagged, answered}}``
- ``mail.deleted``   ``{"message": {id, mailbox, thread}}``
- ``mailbox.counts`` ``{"mailbox": {id, name, role, total, unread}}``
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import ChangesExpired
from postroom.events import Event
from storage.db.models import Change, User

__all__ = ["changes_since", "current_seq", "prune_changes", "to_event"]


def to_event(change: Change) -> Event:
    return Event(type=change.kind, user_id=change.user_id, seq=change.seq, data=change.payload)


async def current_seq(session: AsyncSession, user_id: str) -> int:
    seq = await session.scalar(select(User.change_seq).where(User.id == user_id))
    return int(seq or 0)


async def changes_since(
    session: AsyncSession, user_id: str, since: int, *, limit: int = 1000
) -> list[Event]:
    """The changes after ``since``, oldest first, at most ``limit`` of them.

    Raises :class:`ChangesExpired` when ``since`` is negative, ahead of the log, or older than
    the oldest change still kept: the client cannot catch up and must resync.
    """
    latest = await current_seq(session, user_id)
    if since < 0 or since > latest:
        raise ChangesExpired(
            f"change sequence {since} is unknown (the latest is {latest}); load your mail again"
        )
    if since == latest:
        return []
    oldest = await session.scalar(select(func.min(Change.seq)).where(Change.user_id == user_id))
    if oldest is None or oldest > since + 1:
        raise ChangesExpired(
            f"changes after sequence {since} are no longer kept; load your mail again"
        )
    rows = await session.scalars(
        select(Change)
        .where(Change.user_id == user_id, Change.seq > since)
        .order_by(Change.seq)
        .limit(limit)
    )
    return [to_event(row) for row in rows]


async def prune_changes(session: AsyncSession, user_id: str, *, keep: int) -> int:
    """Drop all but the newest ``keep`` changes of a user; returns how many went."""
    latest = await current_seq(session, user_id)
    result = await session.execute(
        delete(Change).where(Change.user_id == user_id, Change.seq <= latest - keep)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
