"""Transactions that record changes and publish them only after they commit.

:func:`record_change` (:func:`record_changes` for several) appends to the user's change log
inside the caller's transaction; :func:`transaction` publishes the collected events once the
commit has succeeded. This is the only way events are published, so no subscriber ever hears
of a change that was rolled back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    String,
    Table,
    Update,
    any_,
    bindparam,
    insert,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.events import Event, user_channel
from storage.db.models import Change, User
from storage.db.types import utcnow
from storage.registry import Storage

__all__ = [
    "CHANGES",
    "USERS",
    "change_seq_bump",
    "changes_after_bump",
    "record_change",
    "record_changes",
    "record_changes_of_users",
    "reserve_changes_of_users",
    "transaction",
]

_PENDING = "postroom.pending_events"


@asynccontextmanager
async def transaction(store: Storage) -> AsyncIterator[AsyncSession]:
    async with store.db.session() as session:
        async with session.begin():
            yield session
        events: list[Event] = session.info.pop(_PENDING, [])
    await store.bus.publish_many([(user_channel(event.user_id), event) for event in events])


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


USERS = cast(Table, User.__table__)
CHANGES = cast(Table, Change.__table__)
_INSERT_CHANGES = insert(CHANGES)
_BUMPS: dict[str, Update] = {}


def change_seq_bump(dialect: str) -> Update:
    """``change_seq += :n`` for the users ``:ids``, returning their ids and new values; built
    once per engine (the ids an array parameter on PostgreSQL: an expanding ``IN`` list is
    rendered again, a cast per element, at every execution). Add to its ``RETURNING`` to read
    more under the users' row locks in the same statement."""
    statement = _BUMPS.get(dialect)
    if statement is None:
        users: ColumnElement[bool]
        if dialect == "postgresql":
            users = USERS.c.id == any_(bindparam("ids", type_=ARRAY(String)))
        else:
            users = USERS.c.id.in_(bindparam("ids", expanding=True))
        statement = _BUMPS[dialect] = (
            update(USERS)
            .where(users)
            .values(change_seq=USERS.c.change_seq + bindparam("n", type_=BigInteger))
            .returning(USERS.c.id, USERS.c.change_seq)
        )
    return statement


async def record_changes_of_users(
    session: AsyncSession, changes: Mapping[str, Sequence[tuple[str, dict[str, Any]]]]
) -> list[Event]:
    """:func:`record_changes` for several users at once (a batch of sends): one ``UPDATE``
    for all the users with as many changes (usually all of them), one ``INSERT`` for every
    change."""
    events, rows = await reserve_changes_of_users(session, changes)
    if rows:
        connection = await session.connection()
        await connection.execute(_INSERT_CHANGES, rows)
    return events


async def reserve_changes_of_users(
    session: AsyncSession, changes: Mapping[str, Sequence[tuple[str, dict[str, Any]]]]
) -> tuple[list[Event], list[dict[str, Any]]]:
    """The sequence numbers of ``changes`` taken (the ``UPDATE``), and the ``changes`` rows
    that the caller must insert in the same transaction: a batch of sends inserts them with
    its other rows in one statement (:mod:`storage.db.bulk_insert`)."""
    by_count: dict[int, list[str]] = defaultdict(list)
    for user_id in sorted(changes):
        if changes[user_id]:
            by_count[len(changes[user_id])].append(user_id)
    if not by_count:
        return [], []
    connection = await session.connection()
    last: dict[str, int] = {}
    for count, users in by_count.items():
        rows = await connection.execute(
            change_seq_bump(connection.dialect.name), {"ids": users, "n": count}
        )
        last.update((user_id, seq) for user_id, seq in rows)
        if missing := set(users) - last.keys():
            raise LookupError(f"user {sorted(missing)[0]} vanished while recording a change")
    return changes_after_bump(session, changes, last)


def changes_after_bump(
    session: AsyncSession,
    changes: Mapping[str, Sequence[tuple[str, dict[str, Any]]]],
    last: Mapping[str, int],
) -> tuple[list[Event], list[dict[str, Any]]]:
    """The events and ``changes`` rows of ``changes`` once each user's ``change_seq`` was
    moved on by as many (:func:`change_seq_bump`) to ``last``; the events go out after the
    commit."""
    events = [
        Event(type=kind, user_id=user_id, seq=seq, data=payload)
        for user_id in sorted(last)
        for seq, (kind, payload) in enumerate(
            changes[user_id], start=last[user_id] - len(changes[user_id]) + 1
        )
    ]
    now = utcnow()
    session.info.setdefault(_PENDING, []).extend(events)
    return events, [
        {
            "user_id": e.user_id,
            "seq": e.seq,
            "kind": e.type,
            "payload": e.data,
            "created_at": now,
        }
        for e in events
    ]
