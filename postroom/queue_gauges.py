"""Queue depth and age of the oldest entry, read from the database when metrics are scraped.

The database is the system of record (a Redis stream may hold duplicates, or nothing after a
flush), so the numbers come from the rows, not from the queue backend. Each queue is one
aggregate over an index that already exists (``ix_inbound_status``, ``ix_deliveries_due``):
a count and a minimum, cheap at any scrape interval. Only the roles that fill or empty a queue
report it (:data:`QUEUES_OF_ROLE`); every such process reports the same rows, so aggregate
with ``max``, not ``sum``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Select, func, select

from postroom.metrics import QUEUE_DEPTH, QUEUE_OLDEST_AGE
from storage.db.models import Delivery, InboundMessage
from storage.db.types import utcnow
from storage.registry import Storage

__all__ = ["QUEUES_OF_ROLE", "QueueGauges"]

log = logging.getLogger(__name__)

QUEUES_OF_ROLE: dict[str, tuple[str, ...]] = {
    "smtp-in": ("inbound",),
    "processor": ("inbound",),
    "smtp-out": ("outbound_due", "deferred"),
}
"""Which queues a role reports: the one smtp-in fills and the processors empty, the ones the
delivery workers serve. (The gateway, which also fills the outgoing queue, is scraped for
its latency; its replicas are many and would only repeat the same numbers.)"""

_OPEN = ("queued", "deferred")  # a delivery still to be attempted (smtp_out.attempt.PENDING)
REFRESH_SECONDS = 2.0


def _query(queue: str, now: datetime) -> Select[int, datetime]:
    """Count and oldest timestamp of ``queue`` (the minimum is NULL when it is empty)."""
    if queue == "inbound":
        return select(func.count(), func.min(InboundMessage.received_at)).where(
            InboundMessage.status == "pending"
        )
    remote = Delivery.local.is_(False)
    if queue == "outbound_due":
        due = Delivery.next_attempt_at
        return select(func.count(), func.min(due)).where(
            Delivery.status.in_(_OPEN), remote, due <= now
        )
    return select(func.count(), func.min(Delivery.created_at)).where(
        Delivery.status == "deferred", remote
    )


class QueueGauges:
    """Sets the queue gauges of ``queues`` from the database; called before each scrape."""

    def __init__(self, store: Storage, roles: Iterable[str]) -> None:
        self.store = store
        self.queues = [queue for role in roles for queue in QUEUES_OF_ROLE.get(role, ())]

    async def refresh(self) -> None:
        if not self.queues:
            return
        try:
            await asyncio.wait_for(self._read(), REFRESH_SECONDS)
        except Exception as exc:  # a scrape still answers, with the last values it had
            log.warning("queue gauges not refreshed: %s: %s", exc.__class__.__name__, exc)

    async def _read(self) -> None:
        now = utcnow()
        async with self.store.db.session() as session:
            for queue in self.queues:
                row = (await session.execute(_query(queue, now))).one()
                count, oldest = row[0], row[1]
                QUEUE_DEPTH.labels(queue).set(count)
                age = (now - oldest).total_seconds() if oldest is not None else 0.0
                QUEUE_OLDEST_AGE.labels(queue).set(max(age, 0.0))
