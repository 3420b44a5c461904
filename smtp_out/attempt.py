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
from typing import Any

import dns.asyncresolver
from sqlalchemy import ColumnElement, case, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.checks import ContentCheck, Verdict
from postroom.checks.noop import NoopCheck
from postroom.errors import ContentCheckUnavailable
from postroom.logs import set_message_id
from postroom.metrics import DELIVERIES
from smtp_out.backoff import RetrySchedule
from smtp_out.batches import (
    PENDING,
    LeasedDelivery,
    LeasedMessage,
    Recipients,
    Recording,
    give_back,
    record,
    take_lease,
)
from smtp_out.bounces import FollowUp, Notices, outcomes
from smtp_out.connections import Connections
from smtp_out.delivery import Envelope, Reply, deliver
from smtp_out.dkim import DkimSigner
from smtp_out.limits import DeliveryLimits
from smtp_out.mx import ResolutionFailed, Target, resolve_targets
from storage.db.models import Delivery, DeliveryRecipient
from storage.db.types import utcnow
from storage.registry import Storage

__all__ = ["PENDING", "Policy", "attempt_delivery", "overall_status"]

log = logging.getLogger(__name__)

STOPPED = ("held", "cancelled")  # set by an administrator (postroom queue hold|delete)


@dataclass(frozen=True)
class Policy:
    """Everything an attempt needs besides storage and DNS."""

    connections: Connections
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    limits: DeliveryLimits = field(default_factory=DeliveryLimits)
    content_check: ContentCheck = field(default_factory=NoopCheck)
    """Spam/virus check every message passes once, before its first delivery attempt."""
    relay: list[Target] | None = None
    """Smarthost mode: every message goes to these targets instead of the domain's MX."""
    deadline: float = 1200.0
    """Seconds one attempt (DNS and SMTP, all hosts) may take before the rest is deferred."""
    notices: Notices = field(default_factory=Notices)
    """When the sender hears of a delay, and how long a hard bounce suppresses an address."""
    signer: DkimSigner = field(default_factory=DkimSigner)
    """DKIM keys of the sending domains, kept parsed between attempts."""

    @property
    def lease(self) -> float:
        """How long a crashed worker's delivery stays taken: the deadline and a little more."""
        return self.deadline * 1.1 + 5.0


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
    leased = await take_lease(store.db, delivery_id, policy.lease)
    if leased is None:
        log.debug("delivery %s: missing, local, final, not due or taken; skipped", delivery_id)
        return None
    delivery, outbound, current = leased.delivery, leased.outbound, leased.recipients
    lease_until = leased.until
    set_message_id(delivery.outbound_id)  # log lines from here on name the mail
    recipients = current.pending()
    if recipients and (wait := await policy.limits.wait(delivery.domain)) is not None:
        log.info(
            "delivery %s: over the rate for %s; postponed %.0f s",
            delivery_id,
            delivery.domain,
            wait,
        )
        await _give_back(store, delivery_id, lease_until, after=wait)
        return wait
    try:
        replies = await _deliver(
            store,
            delivery.domain,
            outbound,
            recipients,
            resolver,
            policy,
            check=_needs_check(delivery),
        )
    except _Held as held:
        await _hold(store, delivery_id, held.verdict)
        return None
    except BaseException:
        # nothing was accepted: the delivery may be tried again at once
        with contextlib.suppress(Exception):
            await asyncio.shield(_give_back(store, delivery_id, lease_until))
        raise
    # Servers may have said 250. If recording that fails (a crash, the database gone), the
    # lease is kept, so the delivery is retried only when it runs out: the one window in
    # which a message can go out twice, as in every MTA (RFC 1047).
    return await _record(store, delivery, outbound, current, replies, policy)


async def _deliver(
    store: Storage,
    domain: str,
    outbound: LeasedMessage,
    recipients: list[str],
    resolver: dns.asyncresolver.Resolver,
    policy: Policy,
    *,
    check: bool = False,
) -> dict[str, Reply]:
    if not recipients:
        return {}
    raw = await store.blobs.get(outbound.blob_key)
    if check and (unchecked := await _check_content(raw, recipients, policy)) is not None:
        return unchecked
    raw = await policy.signer.sign_for_sender(store, outbound.sender, raw)
    try:
        async with asyncio.timeout(policy.deadline):
            targets = policy.relay or await resolve_targets(resolver, domain)
            return await deliver(
                targets, Envelope(outbound.sender, recipients, raw), policy.connections
            )
    except ResolutionFailed as exc:
        reply = Reply(exc.code, f"{exc.status} {exc.message}")
    except TimeoutError:
        reply = Reply(451, f"4.4.7 the attempt took longer than {policy.deadline:.0f} s")
    return dict.fromkeys(recipients, reply)


CHECK_UNAVAILABLE = Reply(451, "4.7.1 content check unavailable")
"""What recipients are told while the checker is down: the message waits rather than going
out unchecked. Deliberately without details, since senders see it; the log has the cause."""


class _Held(Exception):
    """The content check judged the message spam or infected: hold it, send nothing."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


def _needs_check(delivery: LeasedDelivery) -> bool:
    """Whether this attempt runs the content check: once per delivery, before it first goes out.

    No column says "checked", and retries must not check again (spamd time is not free, and a
    verdict that flipped between attempts would hold mail half delivered), so the row's history
    tells: a delivery never attempted, or whose last attempt stopped at an unavailable
    checker, is still unchecked.
    """
    return delivery.attempts == 0 or delivery.last_error == str(CHECK_UNAVAILABLE)


async def _check_content(
    raw: bytes, recipients: list[str], policy: Policy
) -> dict[str, Reply] | None:
    """None if the message may go; replies deferring everyone if the checker is unavailable.

    Raises _Held for spam or infected mail. The message is checked as the user wrote it,
    before DKIM signing.
    """
    try:
        verdict = await policy.content_check.check(raw)
    except ContentCheckUnavailable as exc:
        log.warning("content check unavailable, delivery deferred: %s", exc.message)
        return dict.fromkeys(recipients, CHECK_UNAVAILABLE)
    if not verdict.clean:
        raise _Held(verdict)
    return None


async def _hold(store: Storage, delivery_id: str, verdict: Verdict) -> None:
    """Keep the delivery back for good, with the reason where the sender sees it.

    Held is final (not pending): neither retries nor the sweeper pick the delivery up again.
    The recipients still open are held with the reason as their reply; ``attempts`` stays as
    it was, since nothing was sent.
    """
    now = utcnow()
    async with store.db.session() as session, session.begin():
        delivery = await session.get_one(Delivery, delivery_id)
        rows = await session.scalars(
            select(DeliveryRecipient).where(
                DeliveryRecipient.delivery_id == delivery_id,
                DeliveryRecipient.status.in_(PENDING),
            )
        )
        for row in rows:
            row.status, row.remote_reply, row.updated_at = "held", verdict.reason, now
        delivery.status = "held"
        delivery.held_reason = delivery.last_error = verdict.reason
        delivery.updated_at = delivery.next_attempt_at = now
    DELIVERIES.labels("held").inc()
    log.warning("delivery %s to %s: held, %s", delivery_id, delivery.domain, verdict.reason)


async def _record(
    store: Storage,
    delivery: LeasedDelivery,
    outbound: LeasedMessage,
    current: Recipients,
    replies: dict[str, Reply],
    policy: Policy,
) -> float | None:
    """Record the replies; a DSN blob for the sender is written first (see smtp_out.bounces).

    ``delivery`` and ``outbound`` are the rows the lease read (detached): the lease keeps
    them ours, so the recording is updates only, no reads, made in one transaction with the
    results of the attempts finishing at the same moment (see smtp_out.batches).
    """
    now, schedule = utcnow(), policy.schedule
    results = outcomes(
        replies, give_up=schedule.expired(delivery.created_at, now), schedule=schedule
    )
    follow_up = await FollowUp.prepare(
        store, delivery, outbound, results, policy.notices, schedule, now
    )
    changes: list[dict[str, object]] = []
    final: list[tuple[str, str | None]] = []  # (status, reply) of every recipient
    for row_id, (address, status, reply) in current.rows.items():
        if (result := results.get(address)) is None:
            final.append((status, reply))
            continue
        changes.append(
            {"id": row_id, "status": result.status, "remote_reply": result.text, "updated_at": now}
        )
        final.append((result.status, result.text))
    status = overall_status([status for status, _ in final])
    attempts = delivery.attempts + 1
    delay = schedule.delay(attempts) if status == "deferred" else None
    last_error = _last_error(final)

    def values() -> dict[str, Any]:
        # built after follow_up.record, which may set delay_notified_at
        return {
            "id": delivery.id,
            "status": status,
            "attempts": attempts,
            "last_error": last_error,
            "updated_at": now,
            "next_attempt_at": now + timedelta(seconds=delay or 0.0),
            "delay_notified_at": delivery.delay_notified_at,
        }

    def guarded() -> Any:
        """A still-open result: one statement of its own, keeping an admin's hold/delete."""
        changed = values()
        changed["status"] = _unless_stopped(status)
        return update(Delivery).where(Delivery.id == changed.pop("id")).values(changed)

    async def before(session: AsyncSession) -> None:
        await follow_up.record(session, delivery, policy.notices, now)

    await record(
        store.db,
        Recording(
            changes,
            values,
            before=before if follow_up.has_writes else None,
            statement=guarded if status in PENDING else None,
        ),
    )
    await follow_up.after_commit(store)
    DELIVERIES.labels(status).inc()
    log.info(
        "delivery %s to %s: %s after attempt %d%s",
        delivery.id,
        delivery.domain,
        status,
        attempts,
        f" ({last_error})" if last_error else "",
    )
    return delay


def _unless_stopped(status: str) -> ColumnElement[str] | str:
    """The new status, except that an administrator's hold or delete made during the attempt
    stands when the attempt ended open (deferred): the worker must not revive what an admin
    stopped. A final outcome (delivered, bounced) is the truth and is recorded either way."""
    if status not in PENDING:
        return status
    return case(
        (Delivery.status.in_(STOPPED), Delivery.status),
        else_=literal(status),
    )


def _last_error(final: Sequence[tuple[str, str | None]]) -> str | None:
    """What stops the delivery now: a deferral first (it is still open), else a bounce."""
    for wanted in ("deferred", "bounced"):
        for status, reply in final:
            if status == wanted and reply:
                return reply
    return None


async def _give_back(
    store: Storage, delivery_id: str, lease_until: datetime, *, after: float = 0.0
) -> None:
    """End our lease early (a failure, a shutdown, a rate limit): due again ``after`` seconds."""
    await give_back(store.db, delivery_id, lease_until, after)
