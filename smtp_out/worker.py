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

__all__ = ["DeliveryWorker"]

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
        delivery_id = job.payload.get("delivery_id")
        if not isinstance(delivery_id, str):
            log.error("outgoing job %s names no delivery (%r); dropped", job.id, job.payload)
            return None
        assert self.resolver is not None, "start() makes the resolver"
        return await attempt_delivery(self.store, delivery_id, self.resolver, self.policy)

    async def _find_lost(self, due_before: datetime) -> list[dict[str, Any]]:
        async with self.store.db.session() as session:
            ids = await _due(session, due_before, limit=1000)
        return [{"delivery_id": delivery_id} for delivery_id in ids]


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
