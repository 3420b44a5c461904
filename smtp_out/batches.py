"""The database writes of concurrent attempts, batched: leases taken together, results
recorded together.

A worker runs many attempts at once, and each needs two writes around its SMTP transaction:
the lease before and the result after. One transaction (one fsync, one turn at SQLite's
writer lock) for each was most of a delivery's cost. Through :class:`GroupCommit`, the
attempts that need a lease at the same moment get it from one ``UPDATE ... RETURNING`` and
one read, and those that finished at the same moment are recorded in one transaction.

What that does to the crash window: a result is durable once its batch commits, so a worker
killed after a server's 250 but before that commit sends the message again when the lease
runs out, as before; the window is now "the results of one batch" (at most a few
milliseconds of finished attempts) rather than one attempt's. Requests are independent: a
failed batch is written again one request at a time, so one bad result (or a deadlock between
two workers' batches on PostgreSQL) fails only itself.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.database import Database
from storage.db.models import Delivery, DeliveryRecipient, OutboundMessage
from storage.db.types import utcnow
from storage.queues.group_commit import GroupCommit

__all__ = [
    "PENDING",
    "Leased",
    "LeasedDelivery",
    "LeasedMessage",
    "Recipients",
    "Recording",
    "give_back",
    "record",
    "take_lease",
]

PENDING = ("queued", "deferred")

# The statements here run per batch of attempts, hundreds of times a second: they are Core
# statements on the tables, returning plain rows. The ORM forms (entities loaded into an
# identity map, bulk updates evaluating their WHERE against it) cost about twice the CPU
# for nothing an attempt uses.
_DELIVERIES = cast(Table, Delivery.__table__)
_RECIPIENTS = cast(Table, DeliveryRecipient.__table__)
_MESSAGES = cast(Table, OutboundMessage.__table__)


@dataclass
class LeasedDelivery:
    """The delivery row as the lease read it (what an attempt needs of it).

    ``delay_notified_at`` is set by the attempt when it sends the delay notice, and written
    with the attempt's result.
    """

    id: str
    outbound_id: str
    domain: str
    attempts: int
    last_error: str | None
    created_at: datetime
    delay_notified_at: datetime | None


@dataclass(frozen=True)
class LeasedMessage:
    """The outbound message of a leased delivery (what an attempt needs of it)."""

    id: str
    sender: str
    blob_key: str
    created_at: datetime


@dataclass
class Recipients:
    """The delivery's recipients as the lease read them: row id -> (address, status, reply).

    While the lease is ours nobody else changes them, so the recording transaction needs
    neither to read the rows again nor to ask which are still open.
    """

    rows: dict[str, tuple[str, str, str | None]]

    def pending(self) -> list[str]:
        return [address for address, status, _ in self.rows.values() if status in PENDING]


@dataclass(frozen=True)
class Leased:
    """A delivery taken for one attempt, with what the attempt reads (detached rows)."""

    delivery: LeasedDelivery
    outbound: LeasedMessage
    recipients: Recipients
    until: datetime
    """The lease's end, as written to ``next_attempt_at``: giving it back matches on it."""


@dataclass
class Recording:
    """One attempt's result, as writes the recording transaction makes.

    ``before`` runs first (the DSN row and suppressions, which may set the delivery's
    ``delay_notified_at``); then every batch's recipient changes go as one bulk update, and
    ``delivery`` (built after ``before``) as one more. ``guarded`` results (still open) are
    written with ``statement`` instead, which keeps an administrator's hold or delete.
    """

    recipient_changes: list[dict[str, Any]]
    delivery: Callable[[], dict[str, Any]]
    before: Callable[[AsyncSession], Awaitable[None]] | None = None
    statement: Callable[[], Any] | None = None


async def take_lease(db: Database, delivery_id: str, seconds: float) -> Leased | None:
    """Lease the delivery for ``seconds`` if it is remote, pending, due and nobody's: one
    conditional update, so of two workers handed the same delivery only one gets it.

    A caller cancelled while its batch is written gives the lease it got back at once.
    """
    pending = _batches(db).leases.submit((delivery_id, seconds))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        pending.add_done_callback(lambda done: _give_back_unused(db, done))
        raise


async def record(db: Database, recording: Recording) -> None:
    """Commit ``recording`` with the others finishing at the same moment."""
    await asyncio.shield(_batches(db).records.submit(recording))


@dataclass
class _Batches:
    leases: GroupCommit[tuple[str, float], Leased | None]
    records: GroupCommit[Recording, None]
    unused: set[asyncio.Task[None]] = field(default_factory=set)


_PER_DATABASE: weakref.WeakKeyDictionary[Database, _Batches] = weakref.WeakKeyDictionary()


def _batches(db: Database) -> _Batches:
    batches = _PER_DATABASE.get(db)
    if batches is None:

        async def leases(requests: Sequence[tuple[str, float]]) -> list[Leased | None]:
            return await _lease_many(db, requests)

        async def records(recordings: Sequence[Recording]) -> list[None]:
            await _record_many(db, recordings)
            return [None] * len(recordings)

        batches = _PER_DATABASE[db] = _Batches(GroupCommit(leases), GroupCommit(records))
    return batches


async def _lease_many(db: Database, requests: Sequence[tuple[str, float]]) -> list[Leased | None]:
    now = utcnow()
    by_seconds: dict[float, set[str]] = defaultdict(set)
    for delivery_id, seconds in requests:
        by_seconds[seconds].add(delivery_id)
    taken: dict[str, tuple[LeasedDelivery, datetime]] = {}
    recipients: dict[str, dict[str, tuple[str, str, str | None]]] = defaultdict(dict)
    d, m, r = _DELIVERIES.c, _MESSAGES.c, _RECIPIENTS.c
    async with db.session() as session, session.begin():
        for seconds, ids in by_seconds.items():
            until = now + timedelta(seconds=seconds)
            rows = await session.execute(
                update(_DELIVERIES)
                .where(
                    d.id.in_(sorted(ids - taken.keys())),
                    d.local.is_(False),
                    d.status.in_(PENDING),
                    d.next_attempt_at <= now,
                )
                # updated_at = next_attempt_at in the future marks the row as leased,
                # not deferred: see storage.repositories.queue_admin.leased
                .values(next_attempt_at=until, updated_at=until)
                .returning(
                    d.id,
                    d.outbound_id,
                    d.domain,
                    d.attempts,
                    d.last_error,
                    d.created_at,
                    d.delay_notified_at,
                )
            )
            taken.update((row[0], (LeasedDelivery(*row), until)) for row in rows)
        if not taken:
            return [None] * len(requests)
        outbounds: dict[str, LeasedMessage] = {}
        # the messages and the recipients in one statement: each costs a round trip (on
        # SQLite, several hand-offs to its thread)
        for (
            message_id,
            sender,
            blob_key,
            created,
            delivery_id,
            row_id,
            *recipient,
        ) in await session.execute(
            select(m.id, m.sender, m.blob_key, m.created_at, d.id)
            .add_columns(r.id, r.address, r.status, r.remote_reply)
            .select_from(_DELIVERIES)
            .join(_MESSAGES, m.id == d.outbound_id)
            .outerjoin(_RECIPIENTS, r.delivery_id == d.id)
            .where(d.id.in_(taken.keys()))
            .order_by(r.address)
        ):
            if message_id not in outbounds:
                outbounds[message_id] = LeasedMessage(message_id, sender, blob_key, created)
            if row_id is not None:
                address, status, reply = recipient
                recipients[delivery_id][row_id] = (address, status, reply)
    answers: list[Leased | None] = []
    for delivery_id, _ in requests:
        # the same delivery asked for twice in one batch (two hints): only the first gets it
        if (found := taken.pop(delivery_id, None)) is None:
            answers.append(None)
            continue
        delivery, until = found
        answers.append(
            Leased(
                delivery,
                outbounds[delivery.outbound_id],
                Recipients(recipients[delivery_id]),
                until,
            )
        )
    return answers


async def _record_many(db: Database, recordings: Sequence[Recording]) -> None:
    async with db.session() as session, session.begin():
        for recording in recordings:
            if recording.before is not None:
                await recording.before(session)
        changes = [change for r in recordings for change in r.recipient_changes]
        if changes:
            await session.execute(_BY_ID[_RECIPIENTS], [_keyed(c) for c in changes])
        plain = [_keyed(r.delivery()) for r in recordings if r.statement is None]
        if plain:
            await session.execute(_BY_ID[_DELIVERIES], plain)
        for recording in recordings:
            if recording.statement is not None:
                await session.execute(recording.statement())


def _by_id(table: Table) -> Any:
    """``UPDATE table SET ... WHERE id = :row_id``, run once per parameter set (executemany);
    the columns set are those of the parameters (``id`` travels as ``row_id``)."""
    return update(table).where(table.c.id == bindparam("row_id"))


_BY_ID = {table: _by_id(table) for table in (_DELIVERIES, _RECIPIENTS)}


def _keyed(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with ``id`` renamed ``row_id``: a bind parameter may not share a column's
    name in an UPDATE's WHERE (SQLAlchemy reserves those for the SET clause)."""
    keyed = dict(values)
    keyed["row_id"] = keyed.pop("id")
    return keyed


def _give_back_unused(db: Database, done: asyncio.Future[Leased | None]) -> None:
    """The lease of a caller cancelled meanwhile: due again now, as after any failure."""
    if done.cancelled() or done.exception() is not None or (leased := done.result()) is None:
        return
    batches = _batches(db)
    task = asyncio.ensure_future(give_back(db, leased.delivery.id, leased.until))
    batches.unused.add(task)
    task.add_done_callback(batches.unused.discard)


async def give_back(db: Database, delivery_id: str, until: datetime, after: float = 0.0) -> None:
    """End a lease early (a failure, a shutdown, a rate limit): due again ``after`` seconds.

    Matches on the lease's own ``next_attempt_at``, so a lease since taken by someone else
    (ours ran out) is left alone.
    """
    now = utcnow()
    async with db.session() as session, session.begin():
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.next_attempt_at == until)
            .values(next_attempt_at=now + timedelta(seconds=after), updated_at=now)
        )
