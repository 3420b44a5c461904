"""One delivery attempt: take the delivery row, deliver, record every result in one commit.

Queue jobs arrive at least once and the sweeper adds hints of its own, so two workers may be
handed the same delivery. Before talking to anyone, an attempt leases the row with one
conditional update (due and still pending -> ``next_attempt_at`` pushed past the attempt's
deadline); whoever loses that race has nothing to do. The lease lives in the row the sweeper
reads, so a worker that dies mid-attempt delays the delivery by the lease, never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dns.asyncresolver
from sqlalchemy import select, update

from smtp_out.backoff import RetrySchedule
from smtp_out.delivery import Envelope, Reply, SessionOptions, deliver
from smtp_out.mx import ResolutionFailed, resolve_targets
from storage.db.models import Delivery, DeliveryRecipient, OutboundMessage
from storage.db.types import utcnow
from storage.registry import Storage

__all__ = ["PENDING", "Policy", "attempt_delivery", "overall_status"]

log = logging.getLogger(__name__)

PENDING = ("queued", "deferred")


@dataclass(frozen=True)
class Policy:
    """Everything an attempt needs besides storage and DNS."""

    session: SessionOptions
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    deadline: float = 1200.0
    """Seconds one attempt (DNS and SMTP, all hosts) may take before the rest is deferred."""

    @property
    def lease(self) -> float:
        return self.deadline + 30.0


def overall_status(statuses: Sequence[str]) -> str:
    """A delivery's status from its recipients' (see ``Delivery.status``)."""
    if any(status in PENDING for status in statuses):
        return "deferred"
    if all(status == "delivered" for status in statuses):
        return "delivered"
    if all(status == "bounced" for status in statuses):
        return "bounced"
    return "partial"


async def attempt_delivery(
    store: Storage, delivery_id: str, resolver: dns.asyncresolver.Resolver, policy: Policy
) -> float | None:
    """Try the delivery once; seconds until the next try if deferred, else None (done)."""
    now = utcnow()
    lease_until = now + timedelta(seconds=policy.lease)
    async with store.db.session() as session, session.begin():
        leased = await session.scalar(
            update(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.local.is_(False),
                Delivery.status.in_(PENDING),
                Delivery.next_attempt_at <= now,
            )
            .values(next_attempt_at=lease_until)
            .returning(Delivery.id)
        )
        if leased is None:
            log.debug("delivery %s: missing, local, final, not due or taken; skipped", delivery_id)
            return None
        delivery = await session.get_one(Delivery, delivery_id)
        outbound = await session.get_one(OutboundMessage, delivery.outbound_id)
        recipients = list(
            await session.scalars(
                select(DeliveryRecipient.address).where(
                    DeliveryRecipient.delivery_id == delivery_id,
                    DeliveryRecipient.status.in_(PENDING),
                )
            )
        )
    try:
        replies = await _deliver(store, delivery.domain, outbound, recipients, resolver, policy)
        return await _record(store, delivery_id, replies, policy.schedule)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(_give_back(store, delivery_id, lease_until))
        raise


async def _deliver(
    store: Storage,
    domain: str,
    outbound: OutboundMessage,
    recipients: list[str],
    resolver: dns.asyncresolver.Resolver,
    policy: Policy,
) -> dict[str, Reply]:
    if not recipients:
        return {}
    raw = await store.blobs.get(outbound.blob_key)
    try:
        async with asyncio.timeout(policy.deadline):
            targets = await resolve_targets(resolver, domain)
            return await deliver(
                targets, Envelope(outbound.sender, recipients, raw), policy.session
            )
    except ResolutionFailed as exc:
        reply = Reply(exc.code, f"{exc.status} {exc.message}")
    except TimeoutError:
        reply = Reply(451, f"4.4.7 the attempt took longer than {policy.deadline:.0f} s")
    return dict.fromkeys(recipients, reply)


async def _record(
    store: Storage, delivery_id: str, replies: dict[str, Reply], schedule: RetrySchedule
) -> float | None:
    now = utcnow()
    async with store.db.session() as session, session.begin():
        delivery = await session.get_one(Delivery, delivery_id)
        rows = list(
            await session.scalars(
                select(DeliveryRecipient).where(DeliveryRecipient.delivery_id == delivery_id)
            )
        )
        give_up = schedule.expired(delivery.created_at, now)
        for row in rows:
            if (reply := replies.get(row.address)) is None:
                continue
            row.status, row.remote_reply, row.updated_at = reply.status, str(reply), now
            if row.status == "deferred" and give_up:
                row.status = "bounced"
                row.remote_reply = f"gave up after {schedule.describe_limit()}: {reply}"
        delivery.status = overall_status([row.status for row in rows])
        delivery.attempts += 1
        delivery.last_error = _last_error(rows)
        delivery.updated_at = now
        delay = schedule.delay(delivery.attempts) if delivery.status == "deferred" else None
        delivery.next_attempt_at = now + timedelta(seconds=delay or 0.0)
    log.info(
        "delivery %s to %s: %s after attempt %d%s",
        delivery_id,
        delivery.domain,
        delivery.status,
        delivery.attempts,
        f" ({delivery.last_error})" if delivery.last_error else "",
    )
    return delay


def _last_error(rows: Sequence[DeliveryRecipient]) -> str | None:
    """What stops the delivery now: a deferral first (it is still open), else a bounce."""
    for wanted in ("deferred", "bounced"):
        for row in rows:
            if row.status == wanted and row.remote_reply:
                return row.remote_reply
    return None


async def _give_back(store: Storage, delivery_id: str, lease_until: datetime) -> None:
    """End our lease early (after a failure or a shutdown) so the delivery is due again now."""
    async with store.db.session() as session, session.begin():
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.next_attempt_at == lease_until)
            .values(next_attempt_at=utcnow())
        )
