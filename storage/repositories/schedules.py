"""When an API send is due: releasing local mail when due, cancelling it.

A send is due at ``send_at`` (now, later for a scheduled send or an undo window). Nothing new
guards remote recipients: their deliveries get ``next_attempt_at = send_at``, and the delivery
claim (``smtp_out.attempt``) and the sweeper take only due deliveries. Local recipients would
otherwise go straight to the processors, so their inbound rows wait as ``scheduled`` until
:func:`release_due` (run by smtp-out on a delayed hint and on every sweep) makes them
``pending``. All of that, and the ``send_schedules`` row, is written with the send itself
(:func:`storage.repositories.outbound.record_sends`).

Cancelling (:func:`cancel`) is all or nothing and races fairly with the workers: it changes only
deliveries no worker has leased (still ``queued``, never attempted, ``next_attempt_at`` not
pushed past ``send_at`` by a lease) and inbound rows no processor has claimed, with conditional
updates in one transaction. If any part has gone out, nothing is cancelled. A cancelled send's
copy in Sent is deleted (as ``mail.deleted`` in the change log): the message was never sent.
"""

from __future__ import annotations

import logging

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import Conflict, NotFound
from storage.db.models import (
    Delivery,
    DeliveryRecipient,
    InboundMessage,
    OutboundMessage,
    SendSchedule,
)
from storage.db.types import utcnow
from storage.queues import OUTGOING
from storage.registry import Storage
from storage.repositories import inbound
from storage.repositories.drafts import discard_copy
from storage.repositories.outbound import RecordedSend
from storage.transaction import transaction

__all__ = ["RELEASE", "cancel", "hint", "release_due"]

log = logging.getLogger(__name__)

RELEASE = "release"
"""Payload key of the outgoing hint that asks smtp-out to release due local mail."""


async def hint(store: Storage, recorded: RecordedSend, delay: float) -> None:
    """Delayed hints for a later send; the sweeper finds it too if these are lost."""
    payloads = [{"delivery_id": delivery.id} for delivery in recorded.remote]
    if recorded.local:
        payloads.append({RELEASE: recorded.outbound.id})
    for payload in payloads:
        try:
            await store.queue.put(OUTGOING, payload, delay=delay)
        except Exception:
            log.exception("could not enqueue %s; the sweeper will", payload)


async def release_due(store: Storage) -> int:
    """Make due scheduled local mail pending and hint the processors; how many rows."""
    now = utcnow()
    due = select(Delivery.id).where(
        Delivery.local.is_(True), Delivery.status == "queued", Delivery.next_attempt_at <= now
    )
    async with store.db.session() as session, session.begin():
        released = list(
            await session.scalars(
                update(InboundMessage)
                .where(InboundMessage.status == "scheduled", InboundMessage.delivery_id.in_(due))
                .values(status="pending", received_at=now)
                .returning(InboundMessage.id)
            )
        )
    for inbound_id in released:
        await inbound.enqueue(store, inbound_id)
    return len(released)


async def cancel(store: Storage, user_id: str, outbound_id: str) -> None:
    """Cancel a send of ``user_id`` that has not gone out; Conflict if any part has."""
    now = utcnow()
    async with transaction(store) as session:
        outbound = await session.scalar(
            select(OutboundMessage).where(
                OutboundMessage.id == outbound_id, OutboundMessage.user_id == user_id
            )
        )
        if outbound is None:
            raise NotFound(f"no send {outbound_id}")
        schedule = await session.get(SendSchedule, outbound_id)
        if schedule is None:
            raise Conflict("this message was submitted over SMTP; it cannot be cancelled")
        if schedule.cancelled_at is not None:
            return
        deliveries = list(
            await session.scalars(select(Delivery).where(Delivery.outbound_id == outbound_id))
        )
        remote = [d.id for d in deliveries if not d.local]
        local = [d.id for d in deliveries if d.local]
        taken = await _rowcount(
            session,
            update(Delivery)
            .where(
                Delivery.id.in_(remote),
                Delivery.status == "queued",
                Delivery.attempts == 0,
                Delivery.next_attempt_at <= schedule.send_at,
            )
            .values(status="cancelled", updated_at=now),
        )
        kept = await _rowcount(
            session,
            update(InboundMessage)
            .where(
                InboundMessage.delivery_id.in_(local),
                InboundMessage.status.in_(("scheduled", "pending")),
            )
            .values(status="cancelled", processed_at=now),
        )
        if taken != len(remote) or kept != len(local):
            raise Conflict(
                f"send {outbound_id} has already gone out (in part or whole); "
                "see GET /api/v1/send/{id} for each recipient"
            )
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(local))
            .values(status="cancelled", updated_at=now)
        )
        await session.execute(
            update(DeliveryRecipient)
            .where(DeliveryRecipient.delivery_id.in_(remote + local))
            .values(status="cancelled", updated_at=now)
        )
        schedule.cancelled_at = now
        await discard_copy(session, user_id, outbound.sent_message_id)


async def _rowcount(session: AsyncSession, statement: object) -> int:
    result = await session.execute(statement)  # type: ignore[call-overload]
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
