"""Delivery workers: consumers of the outgoing queue plus the sweeper that backs them up.

Runs on :class:`storage.queues.consumers.QueueConsumers`, like the processor. A deferred
delivery's job is released with the retry delay, so the same hint comes back when the delivery
is due; the sweeper re-enqueues due deliveries whose hint was lost, which the database makes
possible because every attempt records its outcome and next due time there.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import dns.asyncresolver
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.checks.registry import open_content_check
from postroom.logs import message_scope
from postroom.settings import Settings
from smtp_out.attempt import PENDING, Policy, attempt_delivery
from smtp_out.backoff import RetrySchedule
from smtp_out.bounces import Notices
from smtp_out.connections import Connections, SessionOptions
from smtp_out.limits import DeliveryLimits
from smtp_out.mx import make_resolver
from smtp_out.smarthost import Smarthost
from storage.db.models import Delivery
from storage.queues import OUTGOING, Job
from storage.queues.consumers import ConsumerOptions, QueueConsumers, sweep_options
from storage.registry import Storage
from storage.repositories.schedules import RELEASE, release_due

__all__ = ["DeliveryWorker", "SweepWindow"]

log = logging.getLogger(__name__)


def build_policy(settings: Settings) -> Policy:
    """Direct to MX hosts, or everything through the smarthost when one is configured."""
    per_host = settings.delivery_connections_per_host
    smarthost = Smarthost.from_url(settings.smarthost_url) if settings.smarthost_url else None
    if smarthost is not None:
        options = smarthost.session_options(settings.hostname, per_host)
    else:
        options = SessionOptions(
            port=settings.delivery_port,
            helo=settings.hostname,
            tls=settings.delivery_tls,
            connections_per_host=per_host,
        )
    return Policy(
        Connections(options),
        RetrySchedule(
            first=settings.retry_first_seconds,
            cap=settings.retry_max_seconds,
            give_up_after=timedelta(days=settings.retry_give_up_days),
        ),
        limits=DeliveryLimits.from_settings(settings),
        relay=smarthost.targets if smarthost is not None else None,
        deadline=settings.delivery_attempt_seconds,
        notices=Notices(
            delay_after=timedelta(hours=settings.delay_notice_hours),
            suppression_days=settings.suppression_days,
        ),
    )


class DeliveryWorker:
    """Delivers queued outbound mail over SMTP; listens on nothing."""

    name = "smtp-out"

    def __init__(self, store: Storage) -> None:
        settings = store.settings
        self.store = store
        self.policy = build_policy(settings)
        self.resolver: dns.asyncresolver.Resolver | None = None
        self.sweeps = SweepWindow()
        self.consumers = QueueConsumers(
            store.queue,
            OUTGOING,
            self._handle,
            self._find_lost,
            ConsumerOptions(
                concurrency=settings.delivery_concurrency,
                lease=self.lease,
                max_retry_delay=300.0,
                **sweep_options(settings),
            ),
        )

    @property
    def lease(self) -> float:
        """Queue lease: longer than the row lease, so a returning job finds the row due."""
        return max(self.store.settings.queue_lease_seconds, self.policy.lease + 30.0)

    async def start(self) -> list[str]:
        self.resolver = await make_resolver(self.store.settings)
        # The checker is opened here, not in build_policy, so it lives from start to stop.
        checker = open_content_check(self.store.settings)
        self.policy = replace(self.policy, content_check=checker)
        self.consumers.start()
        return []

    async def stop(self, grace: float) -> None:
        await self.consumers.stop(grace)
        await self.policy.connections.close()
        await self.policy.content_check.close()

    async def _handle(self, job: Job) -> float | None:
        """Attempt the delivery; None when it is finished, else the delay until it is due."""
        if RELEASE in job.payload:  # a scheduled send is due: its local mail may go now
            await release_due(self.store)
            return None
        delivery_id = job.payload.get("delivery_id")
        if not isinstance(delivery_id, str):
            log.error("outgoing job %s names no delivery (%r); dropped", job.id, job.payload)
            return None
        assert self.resolver is not None, "start() makes the resolver"
        with message_scope():  # the attempt names its outbound message once it has read it
            return await attempt_delivery(self.store, delivery_id, self.resolver, self.policy)

    async def _find_lost(self, due_before: datetime) -> list[dict[str, Any]]:
        """Due deliveries whose hint may be lost: see :class:`SweepWindow`."""
        await release_due(self.store)  # scheduled local mail whose hint was lost
        since = await self.sweeps.since(self.store)
        async with self.store.db.session() as session:
            due = await _due(session, due_before, since, limit=SWEEP_BATCH)
        self.sweeps.swept(due_before, due, full=since is None)
        return [{"delivery_id": delivery_id} for delivery_id, _ in due]


SWEEP_BATCH = 1000


class SweepWindow:
    """Which due deliveries a sweep re-enqueues, so a backlog does not fill up with copies.

    A delivery still due a while after it fell due has probably lost its hint; but under a
    backlog it merely waits its turn, and re-enqueuing every such row on every sweep piled up
    thousands of duplicate hints (each costing a claim, a failed lease and an ack). So a sweep
    normally takes only the rows that fell due since the previous sweep's cutoff: each gets one
    extra hint. A full sweep (everything due) runs at start, whenever the queue is empty (a
    Redis FLUSHALL empties it: the lost hints are found at the next sweep) and every
    ``full_every`` sweeps, so a hint lost on its own is found within that many intervals.
    """

    def __init__(self, full_every: int = 10) -> None:
        self.full_every = full_every
        self._cutoff: datetime | None = None
        self._since_full = 0

    async def since(self, store: Storage) -> datetime | None:
        """Where this sweep starts; None for a full sweep."""
        if self._cutoff is None or self._since_full >= self.full_every:
            return None
        if await store.queue.depth(OUTGOING) == 0:
            return None
        return self._cutoff

    def swept(self, cutoff: datetime, found: list[tuple[str, datetime]], *, full: bool) -> None:
        self._since_full = 0 if full else self._since_full + 1
        # a batch cut short by the limit goes on where it stopped, at the next sweep
        self._cutoff = found[-1][1] if len(found) >= SWEEP_BATCH else cutoff


async def _due(
    session: AsyncSession, due_before: datetime, due_since: datetime | None, limit: int
) -> list[tuple[str, datetime]]:
    query = select(Delivery.id, Delivery.next_attempt_at).where(
        Delivery.local.is_(False),
        Delivery.status.in_(PENDING),
        Delivery.next_attempt_at < due_before,
    )
    if due_since is not None:
        query = query.where(Delivery.next_attempt_at >= due_since)
    rows = await session.execute(query.order_by(Delivery.next_attempt_at).limit(limit))
    return [(row.id, row.next_attempt_at) for row in rows]
