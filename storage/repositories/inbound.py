"""Accepting mail for local delivery: durable first, processed later.

:func:`accept` returns only when the raw message is in the blob store and its row committed,
which is what lets the SMTP server answer 250 and the API 202. The queue entry it adds after
the commit is a hint; :func:`stale_pending` lets a sweeper find rows whose hint was lost.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db.models import InboundMessage
from storage.db.types import utcnow
from storage.queues import INCOMING
from storage.registry import Storage
from storage.repositories.mail import register_blob

__all__ = [
    "accept",
    "add_pending",
    "claim_for_processing",
    "enqueue",
    "put_off",
    "stale_pending",
]

log = logging.getLogger(__name__)


async def accept(
    store: Storage,
    raw: bytes,
    *,
    mail_from: str,
    rcpt_to: list[str],
    source: str,
    peer: str = "",
    helo: str = "",
) -> InboundMessage:
    """Make ``raw`` durable for local delivery; ``peer`` (IP) and ``helo`` feed SPF later."""
    key = await store.blobs.put(raw)
    async with store.db.session() as session, session.begin():
        await register_blob(session, key, len(raw))
        row = InboundMessage(
            blob_key=key,
            mail_from=mail_from,
            rcpt_to=rcpt_to,
            source=source,
            peer=peer,
            helo=helo[:255],
        )
        session.add(row)
    await enqueue(store, row.id)
    return row


def add_pending(
    session: AsyncSession,
    *,
    blob_key: str,
    mail_from: str,
    rcpt_to: list[str],
    source: str,
    delivery_id: str | None = None,
) -> InboundMessage:
    """Add an inbound row inside the caller's transaction (the blob row must exist)."""
    row = InboundMessage(
        blob_key=blob_key,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        source=source,
        delivery_id=delivery_id,
    )
    session.add(row)
    return row


async def enqueue(store: Storage, inbound_id: str) -> None:
    """Hint the processors; a failure here loses nothing because the sweeper re-finds the row."""
    try:
        await store.queue.put(INCOMING, {"inbound_id": inbound_id})
    except Exception:
        log.exception("could not enqueue inbound %s; the sweeper will pick it up", inbound_id)


async def claim_for_processing(session: AsyncSession, inbound_id: str) -> InboundMessage | None:
    """Mark a pending row done within the caller's transaction; None if it was done already.

    The conditional update takes the row lock, so of two processors handed the same job only
    one proceeds; the other sees no row and acknowledges its duplicate.
    """
    result = await session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == inbound_id, InboundMessage.status == "pending")
        .values(status="done", processed_at=utcnow())
        .returning(InboundMessage.id)
    )
    if result.first() is None:
        return None
    row: InboundMessage | None = await session.get(InboundMessage, inbound_id)
    return row


async def put_off(store: Storage, inbound_id: str, reason: str) -> None:
    """Note why a pending row was not processed now; it stays pending and is tried again."""
    async with store.db.session() as session, session.begin():
        await session.execute(
            update(InboundMessage)
            .where(InboundMessage.id == inbound_id, InboundMessage.status == "pending")
            .values(last_error=reason)
        )


async def stale_pending(session: AsyncSession, received_before: datetime, limit: int) -> list[str]:
    ids = await session.scalars(
        select(InboundMessage.id)
        .where(InboundMessage.status == "pending", InboundMessage.received_at < received_before)
        .order_by(InboundMessage.received_at)
        .limit(limit)
    )
    return list(ids)
