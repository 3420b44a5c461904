"""The outbound queue as an administrator sees it: list, show, retry, hold, release, delete.

One implementation behind ``postroom queue ...`` and ``/api/v1/admin/queue``. The queue is the
``deliveries`` table (remote deliveries only: local ones never leave the platform), because the
database is the system of record; a queue entry in Redis is only a hint, so retry and release
commit first and hint the workers after, and a lost hint is found by the sweeper.

Every change is one conditional update on the status it starts from, so it races fairly with
other admins and with the workers' claim (which takes only ``queued``/``deferred`` rows that are
due): hold and delete leave a delivery the workers will never claim again; retry and release
make it due now. Delete cancels (``cancelled``) instead of removing rows, so the sender's
``GET /send/{id}`` still says what happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import Conflict, InvalidInput, NotFound
from storage.db.models import Delivery, DeliveryRecipient, OutboundMessage
from storage.db.types import utcnow
from storage.queues import OUTGOING
from storage.registry import Storage
from storage.transaction import transaction

__all__ = [
    "IN_QUEUE",
    "STATUSES",
    "QueueEntry",
    "QueueRecipient",
    "delete",
    "hold",
    "leased",
    "list_entries",
    "release",
    "retry",
    "show",
]

log = logging.getLogger(__name__)

STATUSES = ("queued", "deferred", "held", "delivered", "bounced", "partial", "cancelled")
IN_QUEUE = ("queued", "deferred", "held")
"""What ``queue list`` shows by default: deliveries not yet finished."""
PENDING = ("queued", "deferred")
DEFAULT_REASON = "held by an administrator"
MAX_REASON = 500


@dataclass(frozen=True)
class QueueRecipient:
    address: str
    status: str
    reply: str | None


@dataclass(frozen=True)
class QueueEntry:
    """One delivery: a message to the recipients at one domain."""

    id: str
    outbound_id: str
    sender: str
    domain: str
    status: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None
    held_reason: str | None
    recipient_count: int
    recipients: tuple[QueueRecipient, ...] = ()
    """Filled by :func:`show` only; :func:`list_entries` gives the count."""


def _entry(
    delivery: Delivery,
    sender: str,
    count: int,
    recipients: tuple[QueueRecipient, ...] = (),
) -> QueueEntry:
    return QueueEntry(
        id=delivery.id,
        outbound_id=delivery.outbound_id,
        sender=sender,
        domain=delivery.domain,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
        last_error=delivery.last_error,
        held_reason=delivery.held_reason,
        recipient_count=count,
        recipients=recipients,
    )


async def list_entries(
    session: AsyncSession,
    *,
    status: str | None = None,
    domain: str | None = None,
    limit: int = 100,
) -> list[QueueEntry]:
    """Deliveries by when they are due (oldest first); unfinished ones unless ``status``."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(
            f"unknown status {status!r}; one of {', '.join(STATUSES)}", field="status"
        )
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000", field="limit")
    count = (
        select(func.count())
        .where(DeliveryRecipient.delivery_id == Delivery.id)
        .correlate(Delivery)
        .scalar_subquery()
    )
    query = (
        select(Delivery, OutboundMessage.sender, count)
        .join(OutboundMessage, OutboundMessage.id == Delivery.outbound_id)
        .where(
            Delivery.local.is_(False),
            Delivery.status.in_((status,) if status else IN_QUEUE),
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    if domain:
        query = query.where(Delivery.domain == domain.strip().lower())
    rows = await session.execute(query)
    return [_entry(delivery, sender, n) for delivery, sender, n in rows]


async def show(session: AsyncSession, delivery_id: str) -> QueueEntry:
    """One delivery with each recipient's state; NotFound if there is no such remote delivery."""
    row = (
        await session.execute(
            select(Delivery, OutboundMessage.sender)
            .join(OutboundMessage, OutboundMessage.id == Delivery.outbound_id)
            .where(Delivery.id == delivery_id.strip(), Delivery.local.is_(False))
        )
    ).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id.strip()} in the queue; see `postroom queue list`")
    delivery, sender = row
    recipients = tuple(
        QueueRecipient(r.address, r.status, r.remote_reply)
        for r in await session.scalars(
            select(DeliveryRecipient)
            .where(DeliveryRecipient.delivery_id == delivery.id)
            .order_by(DeliveryRecipient.address)
        )
    )
    return _entry(delivery, sender, len(recipients), recipients)


def leased(now: datetime) -> ColumnElement[bool]:
    """Whether a worker holds the delivery for an attempt right now.

    A worker's lease (smtp_out.batches) pushes ``next_attempt_at`` to the lease's end and
    writes the same time to ``updated_at``; every other change sets ``updated_at`` to the
    time it was made, so a pending row with both equal and in the future is leased.
    """
    return and_(Delivery.next_attempt_at > now, Delivery.updated_at == Delivery.next_attempt_at)


async def retry(store: Storage, delivery_id: str) -> QueueEntry:
    """Make a queued or deferred delivery due now, and hint the workers.

    A delivery being attempted (leased) is refused: making it due would let a second worker
    take it and send the message again while the first is still sending it.
    """
    now = utcnow()
    async with transaction(store) as session:
        entry = await show(session, delivery_id)
        result = await session.execute(
            update(Delivery)
            .where(Delivery.id == entry.id, Delivery.status.in_(PENDING), ~leased(now))
            .values(next_attempt_at=now, updated_at=now)
        )
        assert isinstance(result, CursorResult)
        if result.rowcount != 1:
            if entry.status in PENDING:
                raise Conflict(
                    f"delivery {entry.id} is being attempted right now; "
                    "see `postroom queue show` for its outcome"
                )
            raise Conflict(
                f"delivery {entry.id} is {entry.status}: "
                "only queued or deferred deliveries can be retried"
            )
        entry = await show(session, entry.id)
    await _hint(store, entry.id)
    return entry


async def hold(store: Storage, delivery_id: str, reason: str | None = None) -> QueueEntry:
    """Keep a pending delivery back: no worker claims it until :func:`release`."""
    text = _reason(reason)
    return await _change(
        store,
        delivery_id,
        PENDING,
        {"status": "held", "held_reason": text},
        refusal="only queued or deferred deliveries can be held",
    )


async def release(store: Storage, delivery_id: str) -> QueueEntry:
    """Put a held delivery back in the queue, due now (also one the content check held)."""
    now = utcnow()
    async with transaction(store) as session:
        entry = await _change_in(
            session,
            delivery_id,
            ("held",),
            {"status": "queued", "held_reason": None, "next_attempt_at": now, "updated_at": now},
            refusal="only held deliveries can be released",
        )
        # the content check holds the open recipients too; they are open again
        await session.execute(
            update(DeliveryRecipient)
            .where(DeliveryRecipient.delivery_id == entry.id, DeliveryRecipient.status == "held")
            .values(status="queued", remote_reply=None, updated_at=now)
        )
        entry = await show(session, entry.id)
    await _hint(store, entry.id)
    return entry


async def delete(store: Storage, delivery_id: str) -> QueueEntry:
    """Cancel a delivery that has not finished; its rows stay for the sender's status."""
    now = utcnow()
    async with transaction(store) as session:
        entry = await _change_in(
            session,
            delivery_id,
            IN_QUEUE,
            {"status": "cancelled", "updated_at": now},
            refusal="only queued, deferred or held deliveries can be deleted",
        )
        await session.execute(
            update(DeliveryRecipient)
            .where(
                DeliveryRecipient.delivery_id == entry.id,
                DeliveryRecipient.status.in_(IN_QUEUE),
            )
            .values(status="cancelled", updated_at=now)
        )
        return await show(session, entry.id)


async def _change(
    store: Storage,
    delivery_id: str,
    allowed: tuple[str, ...],
    values: dict[str, Any],
    *,
    refusal: str,
) -> QueueEntry:
    async with transaction(store) as session:
        await _change_in(
            session, delivery_id, allowed, {"updated_at": utcnow(), **values}, refusal=refusal
        )
        return await show(session, delivery_id)


async def _change_in(
    session: AsyncSession,
    delivery_id: str,
    allowed: tuple[str, ...],
    values: dict[str, Any],
    *,
    refusal: str,
) -> QueueEntry:
    """One conditional update from ``allowed``; NotFound or Conflict (naming the state) else."""
    entry = await show(session, delivery_id)
    result = await session.execute(
        update(Delivery)
        .where(Delivery.id == entry.id, Delivery.status.in_(allowed))
        .values(**values)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise Conflict(f"delivery {entry.id} is {entry.status}: {refusal}")
    return entry


def _reason(reason: str | None) -> str:
    """The reason is shown to the sender (``GET /send/{id}``): one short line of text."""
    text = " ".join((reason or "").split())
    if len(text) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters", field="reason")
    if any(not ch.isprintable() for ch in text):
        raise InvalidInput("the reason may hold only printable characters", field="reason")
    return text or DEFAULT_REASON


async def _hint(store: Storage, delivery_id: str) -> None:
    """Tell the workers after commit; if that fails, the sweeper finds the due row anyway."""
    try:
        await store.queue.put(OUTGOING, {"delivery_id": delivery_id})
    except Exception:
        log.exception("could not enqueue delivery %s; the sweeper will", delivery_id)
