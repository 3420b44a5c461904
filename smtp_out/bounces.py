"""What an attempt leaves behind besides statuses: a DSN for the sender, suppressed addresses.

Every sender of outbound mail is a local user (mail only leaves through authenticated users),
so a bounce or a delay notice is not sent over SMTP: it is filed in the sender's Inbox
through the inbound pipeline, like any mail arriving. It follows the same durability order as
everything else: the DSN blob is written before the attempt's recording transaction, its
inbound row is added inside that transaction (so a notice exists exactly when the statuses it
reports are recorded), and the processors are hinted after the commit.

No notice is ever sent for a null sender, nor about a message that is itself a DSN (RFC 3464
section 2: that is how bounce loops start).

A hard bounce suppresses the address (see :func:`hard_bounce`): the gateway then refuses new
sends to it until the entry expires or an administrator removes it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from smtp_out.backoff import RetrySchedule
from smtp_out.batches import LeasedDelivery, LeasedMessage
from smtp_out.delivery import Reply
from smtp_out.dsn import Action, RecipientReport, build_dsn, is_delivery_report
from storage.registry import Storage
from storage.repositories import inbound, suppressions
from storage.repositories.accounts import hosted_domain
from storage.repositories.mail import register_blob

__all__ = ["FollowUp", "Notices", "Outcome", "hard_bounce", "outcomes"]

log = logging.getLogger(__name__)

_NOT_ABOUT_THE_ADDRESS = re.compile(r"^5\d\d[ -]5\.(?:[34567]\.\d+|2\.2)(?=\s|$)")
"""Permanent refusals of the message rather than the address: 5.3.x (the receiving system:
too big, not accepting), 5.4.x (routing), 5.5.x (protocol), 5.6.x (content, including our
own 5.6.7 for internationalized addresses), 5.7.x (policy: spam, sender authentication)
and 5.2.2 (mailbox full, which passes)."""


@dataclass(frozen=True)
class Notices:
    """When to tell the sender, and how long a hard bounce suppresses an address."""

    delay_after: timedelta = timedelta(hours=4)
    suppression_days: float | None = 30.0


@dataclass(frozen=True)
class Outcome:
    """What one attempt made of one recipient."""

    reply: Reply
    status: str
    """delivered | bounced | deferred"""
    text: str
    """What the recipient row records: the reply, or why we gave up."""


def outcomes(
    replies: dict[str, Reply], *, give_up: bool, schedule: RetrySchedule
) -> dict[str, Outcome]:
    """Each recipient's new status; a deferral turns into a bounce once we give up."""
    result: dict[str, Outcome] = {}
    for address, reply in replies.items():
        if reply.status == "deferred" and give_up:
            text = f"gave up after {schedule.describe_limit()}: {reply}"
            result[address] = Outcome(reply, "bounced", text)
        else:
            result[address] = Outcome(reply, reply.status, str(reply))
    return result


def hard_bounce(outcome: Outcome) -> bool:
    """A bounce that says the address cannot receive mail, so sending again is pointless.

    That is a 5xx answer, remote or our own DNS verdict (5.1.2: the domain does not exist,
    5.1.10: null MX), unless its enhanced code blames the message, the sender or a passing
    state instead. A deferral we gave up on is not one: the address may be fine.
    """
    return (
        outcome.status == "bounced"
        and outcome.reply.status == "bounced"
        and not _NOT_ABOUT_THE_ADDRESS.match(str(outcome.reply))
    )


@dataclass
class FollowUp:
    """A notice prepared before the recording transaction, and the suppressions it brings."""

    suppress: dict[str, str] = field(default_factory=dict)
    """Hard-bounced address -> the reply, kept as the reason."""
    blob_key: str | None = None
    size: int = 0
    sender: str = ""
    delayed: bool = False
    inbound_id: str | None = None

    @classmethod
    async def prepare(
        cls,
        store: Storage,
        delivery: LeasedDelivery,
        outbound: LeasedMessage,
        results: dict[str, Outcome],
        notices: Notices,
        schedule: RetrySchedule,
        now: datetime,
    ) -> FollowUp:
        follow = cls(
            suppress={a: str(o.reply) for a, o in results.items() if hard_bounce(o)},
            sender=outbound.sender,
        )
        failed = [_report(a, o, "failed") for a, o in results.items() if o.status == "bounced"]
        delayed: list[RecipientReport] = []
        if delivery.delay_notified_at is None and now - delivery.created_at >= notices.delay_after:
            delayed = [
                _report(a, o, "delayed") for a, o in results.items() if o.status == "deferred"
            ]
        if not (failed or delayed):
            return follow
        try:
            reports = [*failed, *delayed]
            retry_until = delivery.created_at + schedule.give_up_after
            raw = await _notice(store, delivery, outbound, reports, retry_until)
        except Exception:
            # Losing a notice is better than failing the attempt's record: an unrecorded
            # attempt is retried, and would send the message again to whoever took it.
            log.exception("delivery %s: could not prepare the notice to the sender", delivery.id)
            return follow
        if raw is not None:
            follow.blob_key, follow.size, follow.delayed = raw[0], raw[1], bool(delayed)
        return follow

    @property
    def has_writes(self) -> bool:
        """Whether :meth:`record` has anything to write (most attempts: nothing)."""
        return bool(self.suppress) or self.blob_key is not None

    async def record(
        self, session: AsyncSession, delivery: LeasedDelivery, notices: Notices, now: datetime
    ) -> None:
        """Inside the recording transaction: the notice's inbound row, the suppressions."""
        # One order for every worker, so two upserting the same addresses cannot deadlock.
        for address, reason in sorted(self.suppress.items()):
            await suppressions.suppress(session, address, reason, notices.suppression_days, now=now)
        if self.blob_key is None:
            return
        await register_blob(session, self.blob_key, self.size)
        row = inbound.add_pending(
            session, blob_key=self.blob_key, mail_from="", rcpt_to=[self.sender], source="dsn"
        )
        if self.delayed:
            delivery.delay_notified_at = now
        await session.flush()
        self.inbound_id = row.id

    async def after_commit(self, store: Storage) -> None:
        if self.inbound_id is not None:
            await inbound.enqueue(store, self.inbound_id)
        if self.suppress:
            log.info("suppressed after a hard bounce: %s", ", ".join(sorted(self.suppress)))


def _report(address: str, outcome: Outcome, action: Action) -> RecipientReport:
    return RecipientReport(address, action, str(outcome.reply), explanation=outcome.text)


async def _notice(
    store: Storage,
    delivery: LeasedDelivery,
    outbound: LeasedMessage,
    reports: list[RecipientReport],
    retry_until: datetime,
) -> tuple[str, int] | None:
    """Build and store the DSN; None when no notice may be sent for this message."""
    if not outbound.sender:
        log.info("delivery %s: no notice for a message with a null sender", delivery.id)
        return None
    domain = outbound.sender.rsplit("@", 1)[-1]
    async with store.db.session() as session:
        hosted = await hosted_domain(session, domain) is not None
    if not hosted:
        log.warning(
            "delivery %s: sender %s is not hosted here; no notice sent",
            delivery.id,
            outbound.sender,
        )
        return None
    original = await store.blobs.get(outbound.blob_key)
    if is_delivery_report(original):
        log.info("delivery %s: no notice about a message that is itself a DSN", delivery.id)
        return None
    raw = build_dsn(
        hostname=store.settings.hostname,
        sender=outbound.sender,
        original=original,
        arrival=outbound.created_at,
        recipients=reports,
        retry_until=retry_until,
    )
    return await store.blobs.put(raw), len(raw)
