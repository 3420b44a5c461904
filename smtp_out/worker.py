"""Delivery workers: consumers of the outgoing queue plus the sweeper that backs them up.

Shaped like :class:`smtp_in.processor.Processor`. A deferred delivery's job is released with
the retry delay, so the same hint comes back when the delivery is due; the sweeper re-enqueues
due deliveries whose hint was lost, which the database makes possible because every attempt
records its outcome and next due time there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import datetime, timedelta

import dns.asyncresolver
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from smtp_out.attempt import PENDING, Policy, attempt_delivery
from smtp_out.delivery import SessionOptions
from smtp_out.mx import make_resolver
from storage.db.models import Delivery
from storage.db.types import utcnow
from storage.queues import OUTGOING, Job
from storage.registry import Storage

__all__ = ["DeliveryWorker"]

log = logging.getLogger(__name__)

CONCURRENCY = 8
SWEEP_INTERVAL = 30.0
SWEEP_AGE = timedelta(seconds=60)
RETRY_DELAY = 5.0
MAX_RETRY_DELAY = 300.0


class DeliveryWorker:
    """Delivers queued outbound mail over SMTP; listens on nothing."""

    name = "smtp-out"

    def __init__(self, store: Storage) -> None:
        settings = store.settings
        self.store = store
        self.concurrency = CONCURRENCY
        self.policy = Policy(SessionOptions(port=settings.delivery_port, helo=settings.hostname))
        self._consumer = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def lease(self) -> float:
        """Queue lease: longer than the row lease, so a returning job finds the row due."""
        return max(self.store.settings.queue_lease_seconds, self.policy.lease + 30.0)

    async def start(self) -> list[str]:
        resolver = await make_resolver(self.store.settings)
        self._tasks = [
            asyncio.create_task(self._consume(n, resolver)) for n in range(self.concurrency)
        ]
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

    async def _consume(self, number: int, resolver: dns.asyncresolver.Resolver) -> None:
        consumer = f"{self._consumer}/{number}"
        while not self._stopping.is_set():
            try:
                jobs = await self.store.queue.claim(
                    OUTGOING, consumer, limit=1, lease=self.lease, wait=1.0
                )
            except Exception:
                log.exception("cannot claim from the outgoing queue; retrying")
                await asyncio.sleep(1.0)
                continue
            for job in jobs:
                try:
                    await self._run(job, resolver)
                except Exception:
                    log.exception("cannot hand back job %s; its lease will expire", job.id)

    async def _run(self, job: Job, resolver: dns.asyncresolver.Resolver) -> None:
        if self._stopping.is_set():
            await self.store.queue.release(job)
            return
        delivery_id = job.payload.get("delivery_id")
        if not isinstance(delivery_id, str):
            log.error("outgoing job %s names no delivery (%r); dropped", job.id, job.payload)
            await self.store.queue.ack(job)
            return
        try:
            delay = await attempt_delivery(self.store, delivery_id, resolver, self.policy)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.queue.release(job))
            raise
        except Exception:
            log.exception("delivery %s failed (attempt %d); will retry", job.payload, job.attempts)
            retry = min(RETRY_DELAY * job.attempts, MAX_RETRY_DELAY)
            await self.store.queue.release(job, delay=retry)
            return
        if delay is None:
            await self.store.queue.ack(job)
        else:
            await self.store.queue.release(job, delay=delay)

    async def _sweep(self) -> None:
        """At start re-enqueue every due delivery, then those whose hint seems lost."""
        age = timedelta(0)
        while not self._stopping.is_set():
            try:
                async with self.store.db.session() as session:
                    ids = await _due(session, utcnow() - age, limit=1000)
                for delivery_id in ids:
                    await self.store.queue.put(OUTGOING, {"delivery_id": delivery_id})
                if ids:
                    log.info("sweeper re-enqueued %d due delivery(ies)", len(ids))
            except Exception:
                log.exception("sweep of due deliveries failed; will try again")
            age = SWEEP_AGE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), SWEEP_INTERVAL)


async def _due(session: AsyncSession, due_before: datetime, limit: int) -> list[str]:
    ids = await session.scalars(
        select(Delivery.id)
        .where(
            Delivery.local.is_(False),
            Delivery.status.in_(PENDING),
            Delivery.next_attempt_at < due_before,
        )
        .order_by(Delivery.next_attempt_at)
        .limit(limit)
    )
    return list(ids)
