"""Processors: turn accepted raw mail into messages in mailboxes.

Each job names an ``inbound_messages`` row. Processing is idempotent: the row is marked done in
the same transaction that files the copies, so a job delivered twice, or a processor killed
half-way, never files a message twice or loses one. A sweeper re-enqueues pending rows, which
covers hints lost to a crash or a flushed queue.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import update

from postroom.message import parse_message
from storage.db.models import Delivery, DeliveryRecipient, InboundMessage
from storage.db.types import utcnow
from storage.queues import INCOMING, Job
from storage.queues.consumers import ConsumerOptions, QueueConsumers, sweep_options
from storage.registry import Storage
from storage.repositories import inbound
from storage.repositories.accounts import find_user, mailbox_by_role
from storage.repositories.mail import add_copy, save_attachments, store_content
from storage.transaction import transaction

__all__ = ["Processor", "process_inbound"]

log = logging.getLogger(__name__)


async def process_inbound(store: Storage, inbound_id: str) -> None:
    async with store.db.session() as session:
        row = await session.get(InboundMessage, inbound_id)
    if row is None or row.status != "pending":
        return
    raw = await store.blobs.get(row.blob_key)
    parsed = await asyncio.to_thread(parse_message, raw)
    attachment_keys = await save_attachments(store.blobs, parsed)
    async with transaction(store) as session:
        if await inbound.claim_for_processing(session, inbound_id) is None:
            return
        await store_content(session, row.blob_key, parsed, attachment_keys)
        for address in dict.fromkeys(a.lower() for a in row.rcpt_to):
            user = await find_user(session, address)
            if user is None:
                log.warning("inbound %s: recipient %s no longer exists; skipped", row.id, address)
                continue
            inbox = await mailbox_by_role(session, user.id, "inbox")
            await add_copy(
                session,
                user_id=user.id,
                mailbox=inbox,
                raw_key=row.blob_key,
                size=len(raw),
                parsed=parsed,
                inbound_id=row.id,
                received_at=row.received_at,
            )
        if row.delivery_id is not None:
            now = utcnow()
            await session.execute(
                update(DeliveryRecipient)
                .where(DeliveryRecipient.delivery_id == row.delivery_id)
                .values(
                    status="delivered", remote_reply="stored in the local mailbox", updated_at=now
                )
            )
            await session.execute(
                update(Delivery)
                .where(Delivery.id == row.delivery_id)
                .values(status="delivered", updated_at=now)
            )
    log.info("inbound %s filed for %d recipient(s)", row.id, len(row.rcpt_to))


class Processor:
    """Consumers of the incoming queue plus the sweeper that makes lost hints harmless."""

    name = "processor"

    def __init__(self, store: Storage) -> None:
        self.store = store
        settings = store.settings
        self.consumers = QueueConsumers(
            store.queue,
            INCOMING,
            self._handle,
            self._find_lost,
            ConsumerOptions(
                concurrency=settings.processor_concurrency,
                lease=settings.queue_lease_seconds,
                **sweep_options(settings),
            ),
        )

    async def start(self) -> list[str]:
        self.consumers.start()
        return []

    async def stop(self, grace: float) -> None:
        await self.consumers.stop(grace)

    async def _handle(self, job: Job) -> None:
        await process_inbound(self.store, str(job.payload["inbound_id"]))

    async def _find_lost(self, received_before: datetime) -> list[dict[str, Any]]:
        async with self.store.db.session() as session:
            ids = await inbound.stale_pending(session, received_before, limit=1000)
        return [{"inbound_id": inbound_id} for inbound_id in ids]
