"""Recording a send: the Sent copy, the outbound row and one delivery per recipient domain.

All of it is written in the caller's single transaction (a transactional outbox): after the
commit the message is durable and every recipient has a row saying what happens next. Local
recipients get an inbound row for the processors; other domains wait for smtp-out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import NotFound
from postroom.message import ParsedMessage
from storage.db.models import Delivery, DeliveryRecipient, InboundMessage, OutboundMessage, User
from storage.repositories import inbound
from storage.repositories.accounts import mailbox_by_role
from storage.repositories.mail import add_copy, register_blob, store_content

__all__ = ["RecordedSend", "record_send", "send_status"]


@dataclass
class RecordedSend:
    outbound: OutboundMessage
    local: list[InboundMessage]
    remote: list[Delivery]


async def record_send(
    session: AsyncSession,
    *,
    sender: User,
    raw: bytes,
    raw_key: str,
    parsed: ParsedMessage,
    attachment_keys: list[str],
    recipients: list[str],
    bcc: list[str],
    local_domains: set[str],
) -> RecordedSend:
    await register_blob(session, raw_key, len(raw))
    await store_content(session, raw_key, parsed, attachment_keys)
    sent = await mailbox_by_role(session, sender.id, "sent")
    copy = await add_copy(
        session,
        user_id=sender.id,
        mailbox=sent,
        raw_key=raw_key,
        size=len(raw),
        parsed=parsed,
        bcc=bcc,
        seen=True,
    )
    outbound = OutboundMessage(
        user_id=sender.id, sender=sender.address, blob_key=raw_key, sent_message_id=copy.id
    )
    session.add(outbound)
    await session.flush()

    by_domain: dict[str, list[str]] = defaultdict(list)
    for address in recipients:
        by_domain[address.rsplit("@", 1)[1]].append(address)
    result = RecordedSend(outbound, [], [])
    for domain, addresses in by_domain.items():
        is_local = domain in local_domains
        delivery = Delivery(outbound_id=outbound.id, domain=domain, local=is_local)
        session.add(delivery)
        await session.flush()
        for address in addresses:
            session.add(DeliveryRecipient(delivery_id=delivery.id, address=address))
        if is_local:
            result.local.append(
                inbound.add_pending(
                    session,
                    blob_key=raw_key,
                    mail_from=sender.address,
                    rcpt_to=addresses,
                    source="api",
                    delivery_id=delivery.id,
                )
            )
        else:
            result.remote.append(delivery)
    await session.flush()
    return result


async def send_status(
    session: AsyncSession, user_id: str, outbound_id: str
) -> tuple[OutboundMessage, list[tuple[Delivery, DeliveryRecipient]]]:
    """A send of ``user_id`` with each recipient and its delivery; someone else's is NotFound."""
    outbound = await session.scalar(
        select(OutboundMessage).where(
            OutboundMessage.id == outbound_id, OutboundMessage.user_id == user_id
        )
    )
    if outbound is None:
        raise NotFound(f"no send {outbound_id}")
    rows = await session.execute(
        select(Delivery, DeliveryRecipient)
        .join(DeliveryRecipient, DeliveryRecipient.delivery_id == Delivery.id)
        .where(Delivery.outbound_id == outbound.id)
        .order_by(DeliveryRecipient.address)
    )
    return outbound, [(delivery, recipient) for delivery, recipient in rows]
