"""Processors: turn accepted raw mail into messages in mailboxes.

Each job names an ``inbound_messages`` row. Processing is idempotent: the row is marked done in
the same transaction that files the copies, so a job delivered twice, or a processor killed
half-way, never files a message twice or loses one. A sweeper re-enqueues pending rows, which
covers hints lost to a crash or a flushed queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import timedelta

from sqlalchemy import update

from postroom.message import parse_message
from storage.db.models import Delivery, DeliveryRecipient, InboundMessage
from storage.db.types import utcnow
from storage.queues import INCOMING, Job
from storage.registry import Storage
from storage.repositories import inbound
from storage.repositories.accounts import find_user, mailbox_by_role
from storage.repositories.mail import add_copy, save_attachments, store_content
from storage.transaction import transaction

__all__ = ["Processor", "process_inbound"]

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 30.0
SWEEP_AGE = timedelta(seconds=60)
RETRY_DELAY = 5.0


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
        self.concurrency = store.settings.processor_concurrency
        self.lease = store.settings.queue_lease_seconds
        self._consumer = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> list[str]:
        self._tasks = [asyncio.create_task(self._consume(n)) for n in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._sweep()))
        return []

    async def stop(self, grace: float) -> None:
        self._stopping.set()
        _, pending = await asyncio.wait(self._tasks, timeout=grace) if self._tasks else ((), ())
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _consume(self, number: int) -> None:
        consumer = f"{self._consumer}/{number}"
        while not self._stopping.is_set():
            try:
                jobs = await self.store.queue.claim(
                    INCOMING, consumer, limit=1, lease=self.lease, wait=1.0
                )
            except Exception:
                log.exception("cannot claim from the incoming queue; retrying")
                await asyncio.sleep(1.0)
                continue
            for job in jobs:
                try:
                    await self._run(job)
                except Exception:
                    # the queue failed to ack or release: the lease will expire and the job
                    # comes back, so keep consuming rather than let this task die
                    log.exception("queue bookkeeping for %s failed", job.id)

    async def _run(self, job: Job) -> None:
        if self._stopping.is_set():
            await self.store.queue.release(job)
            return
        try:
            await process_inbound(self.store, str(job.payload["inbound_id"]))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.queue.release(job))
            raise
        except Exception:
            log.exception(
                "processing %s failed (attempt %d); will retry", job.payload, job.attempts
            )
            await self.store.queue.release(job, delay=RETRY_DELAY * job.attempts)
            return
        await self.store.queue.ack(job)

    async def _sweep(self) -> None:
        """At start re-enqueue every pending row, then those whose hint seems lost."""
        age = timedelta(0)
        while not self._stopping.is_set():
            try:
                async with self.store.db.session() as session:
                    ids = await inbound.stale_pending(session, utcnow() - age, limit=1000)
                for inbound_id in ids:
                    await inbound.enqueue(self.store, inbound_id)
                if ids:
                    log.info("sweeper re-enqueued %d pending inbound message(s)", len(ids))
            except Exception:
                log.exception("sweep of pending inbound mail failed; will try again")
            age = SWEEP_AGE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), SWEEP_INTERVAL)
