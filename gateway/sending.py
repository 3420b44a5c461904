"""Sending from the API: compose, check recipients, make durable, then hint the workers."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.compose import Composed, compose
from gateway.errors import PayloadTooLarge
from gateway.schemas import SendRequest
from postroom.errors import InvalidInput
from postroom.message import parse_message
from storage.db.models import Domain, User
from storage.queues import OUTGOING
from storage.registry import Storage
from storage.repositories import inbound, suppressions
from storage.repositories.accounts import find_user
from storage.repositories.mail import save_attachments
from storage.repositories.outbound import RecordedSend, record_send
from storage.transaction import transaction

__all__ = ["send"]

log = logging.getLogger(__name__)


async def send(store: Storage, user: User, request: SendRequest) -> RecordedSend:
    settings = store.settings
    composed = compose(request, sender=user.address, hostname=settings.hostname)
    if len(composed.raw) > settings.max_message_size:
        raise PayloadTooLarge(
            f"the message is {len(composed.raw)} bytes; the limit is {settings.max_message_size}",
            field="body",
        )
    async with store.db.session() as session:
        local_domains = set((await session.scalars(select(Domain.name))).all())
        await _check_local_recipients(session, composed, local_domains)
        await _check_suppressed(session, composed)

    parsed = await asyncio.to_thread(parse_message, composed.raw)
    attachment_keys = await save_attachments(store.blobs, parsed)
    raw_key = await store.blobs.put(composed.raw)
    async with transaction(store) as session:
        recorded = await record_send(
            session,
            sender=user,
            raw=composed.raw,
            raw_key=raw_key,
            parsed=parsed,
            attachment_keys=attachment_keys,
            recipients=composed.recipients,
            bcc=composed.bcc,
            local_domains=local_domains,
        )
    for row in recorded.local:
        await inbound.enqueue(store, row.id)
    for delivery in recorded.remote:
        try:
            await store.queue.put(OUTGOING, {"delivery_id": delivery.id})
        except Exception:
            log.exception("could not enqueue delivery %s; the sweeper will", delivery.id)
    return recorded


async def _check_local_recipients(
    session: AsyncSession, composed: Composed, local: set[str]
) -> None:
    """A local recipient who does not exist is refused now, not bounced later."""
    for field, values in (("to", composed.to), ("cc", composed.cc), ("bcc", composed.bcc)):
        for index, address in enumerate(values):
            if address.rsplit("@", 1)[1] in local and await find_user(session, address) is None:
                raise InvalidInput(f"{address}: no such user here", field=f"{field}[{index}]")


async def _check_suppressed(session: AsyncSession, composed: Composed) -> None:
    """An address that bounced for good is refused now: sending again would only bounce."""
    listed = await suppressions.active(session, composed.recipients)
    if not listed:
        return
    for field, values in (("to", composed.to), ("cc", composed.cc), ("bcc", composed.bcc)):
        for index, address in enumerate(values):
            if (entry := listed.get(address.lower())) is not None:
                until = (
                    f"it expires on {entry.expires_at:%Y-%m-%d %H:%M} UTC or "
                    if entry.expires_at is not None
                    else ""
                )
                raise InvalidInput(
                    f"{address} is on the suppression list since "
                    f"{entry.created_at:%Y-%m-%d %H:%M} UTC ({entry.source}: {entry.reason}); "
                    f"mail to it is refused until {until}an administrator removes it with "
                    f"`postroom suppression remove {entry.address}` or "
                    f"DELETE /api/v1/suppressions/{entry.address}",
                    field=f"{field}[{index}]",
                )
