"""Accepting a user's finished message for sending: the one path the API and submission share.

Both ``POST /api/v1/send`` and the SMTP submission port end here with raw RFC 5322 bytes and an
envelope. The checks (local users exist, nobody suppressed) come first and change nothing; then
the blobs are written and one transaction records the Sent copy and every delivery (the
transactional outbox), and only then are the workers hinted. When :func:`submit` returns, the
message is durable: a ``202`` or ``250`` may be given.

A send may be due later (``send_at``: a scheduled send or an undo window). Its deliveries are
then recorded with ``next_attempt_at = send_at``, which the delivery claim and the sweeper
already respect, and its local inbound rows as ``scheduled`` rather than ``pending``, so no
processor takes them; :mod:`storage.repositories.schedules` releases them when due and cancels
sends that have not gone out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import InvalidInput
from postroom.message import parse_message
from storage.db.models import Domain, User
from storage.queues import OUTGOING
from storage.registry import Storage
from storage.repositories import inbound, schedules, suppressions
from storage.repositories.accounts import find_user
from storage.repositories.mail import save_attachments
from storage.repositories.outbound import RecordedSend, record_send
from storage.transaction import transaction

__all__ = ["Origin", "submit"]

log = logging.getLogger(__name__)

INLINE_PARSE_BYTES = 64 * 1024
"""Messages up to this size are parsed on the event loop: a thread would hold the GIL in
pure-Python parsing while every database call (each a hop to the SQLite thread and back)
waits for it, which costs a busy gateway more than the parse itself (about a millisecond).
Larger messages still go to a thread so the loop never stalls for long."""


@dataclass(frozen=True)
class Origin:
    """Where a recipient came from: the request field and the address as written there."""

    field: str | None
    written: str


async def submit(
    store: Storage,
    user: User,
    raw: bytes,
    *,
    recipients: list[str],
    bcc: list[str],
    origins: Mapping[str, Origin] | None = None,
    send_at: datetime | None = None,
    on_record: Callable[[AsyncSession, RecordedSend], Awaitable[None]] | None = None,
) -> RecordedSend:
    """Make ``raw`` durable for ``recipients`` (lower-cased addresses, bcc among them).

    ``origins`` says where each recipient came from, so an error names the request field
    (``to[0]``) and the address as the user wrote it. ``send_at`` records when the send is
    due (and makes it cancellable); ``on_record`` runs inside the same transaction, so what it
    writes (a drafts' removal, an idempotency key) commits or fails with the send.
    """
    origins = origins or {}
    async with store.db.reader() as session:
        local_domains = set((await session.scalars(select(Domain.name))).all())
        await _check_local_recipients(session, recipients, local_domains, origins)
        await _check_suppressed(session, recipients, origins)

    if len(raw) <= INLINE_PARSE_BYTES:
        parsed = parse_message(raw)
    else:
        parsed = await asyncio.to_thread(parse_message, raw)
    attachment_keys = await save_attachments(store.blobs, parsed)
    raw_key = await store.blobs.put(raw)
    async with transaction(store) as session:
        recorded = await record_send(
            session,
            sender=user,
            raw=raw,
            raw_key=raw_key,
            parsed=parsed,
            attachment_keys=attachment_keys,
            recipients=recipients,
            bcc=bcc,
            local_domains=local_domains,
        )
        delay = 0.0
        if send_at is not None:
            delay = await schedules.record(session, recorded, send_at)
        if on_record is not None:
            await on_record(session, recorded)
    if delay > 0:
        await schedules.hint(store, recorded, delay)
        return recorded
    for row in recorded.local:
        await inbound.enqueue(store, row.id)
    for delivery in recorded.remote:
        try:
            await store.queue.put(OUTGOING, {"delivery_id": delivery.id})
        except Exception:
            log.exception("could not enqueue delivery %s; the sweeper will", delivery.id)
    return recorded


async def _check_local_recipients(
    session: AsyncSession, recipients: list[str], local: set[str], origins: Mapping[str, Origin]
) -> None:
    """A local recipient who does not exist is refused now, not bounced later."""
    for address in recipients:
        if address.rsplit("@", 1)[1] in local and await find_user(session, address) is None:
            origin = origins.get(address, Origin(None, address))
            raise InvalidInput(f"{origin.written}: no such user here", field=origin.field)


async def _check_suppressed(
    session: AsyncSession, recipients: list[str], origins: Mapping[str, Origin]
) -> None:
    """An address that bounced for good is refused now: sending again would only bounce."""
    listed = await suppressions.active(session, recipients)
    for address in recipients:
        if (entry := listed.get(address.lower())) is None:
            continue
        origin = origins.get(address, Origin(None, address))
        until = (
            f"it expires on {entry.expires_at:%Y-%m-%d %H:%M} UTC or "
            if entry.expires_at is not None
            else ""
        )
        raise InvalidInput(
            f"{origin.written} is on the suppression list since "
            f"{entry.created_at:%Y-%m-%d %H:%M} UTC ({entry.source}: {entry.reason}); "
            f"mail to it is refused until {until}an administrator removes it with "
            f"`postroom suppression remove {entry.address}` or "
            f"DELETE /api/v1/suppressions/{entry.address}",
            field=origin.field,
        )
