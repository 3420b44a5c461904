"""Processors: turn accepted raw mail into messages in mailboxes.

Each job names an ``inbound_messages`` row. Processing is idempotent: the row is marked done in
the same transaction that files the copies, so a job delivered twice, or a processor killed
half-way, never files a message twice or loses one. A sweeper re-enqueues pending rows, which
covers hints lost to a crash or a flushed queue.

For mail from other servers (``source == "smtp"``) the processor first verifies SPF, DKIM and
DMARC and asks the content check (spam/virus); the results become trace fields below our
``Received:`` line (see ``smtp_in/received.py``), so the copies filed point at a new blob:
our trace fields plus the bytes that arrived. Mail our own users sent is not checked.

When the content check cannot answer (ContentCheckUnavailable) nothing is filed: the row stays
``pending`` with the reason in ``last_error``, and the sweeper hands it back within
``POSTROOM_SWEEP_AGE_SECONDS`` (plus one sweep interval), as often as it takes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dns.resolver
from sqlalchemy import update

from postroom.checks import ContentCheck
from postroom.checks.registry import open_content_check
from postroom.errors import ContentCheckUnavailable, NotFound
from postroom.logs import message_context
from postroom.message import ParsedMessage, parse_headers, parse_message
from postroom.metrics import INBOUND_FILED
from search.documents import index_parsed
from smtp_in.authentication import make_resolver, verify
from smtp_in.filing import Filing, decide
from smtp_in.received import add_trace_fields
from storage.db.models import Delivery, DeliveryRecipient, InboundMessage
from storage.db.types import utcnow
from storage.queues import INCOMING, Job
from storage.queues.consumers import ConsumerOptions, QueueConsumers, sweep_options
from storage.registry import Storage
from storage.repositories import inbound
from storage.repositories.accounts import find_user, mailbox_by_role
from storage.repositories.mail import add_copy, register_blob, save_attachments, store_content
from storage.transaction import transaction

__all__ = ["CHECKED_SOURCES", "Inspection", "Processor", "parse_bounded", "process_inbound"]

log = logging.getLogger(__name__)

CHECKED_SOURCES = frozenset({"smtp"})
"""Sources of mail from other servers. The API, submission and our own bounces are trusted."""
PARSE_SECONDS = 30.0
"""Past this a message is filed with its headers only. The part and depth caps of
``postroom.message`` keep real parses far below it; this is the backstop."""
CONTENT_CACHE_TTL = 3600.0


@dataclass
class Inspection:
    """What checks mail from other servers: the content check and the DNS resolver."""

    content_check: ContentCheck
    resolver: dns.resolver.Resolver


async def process_inbound(
    store: Storage, inbound_id: str, inspection: Inspection | None = None
) -> None:
    """File one accepted message; without ``inspection`` nothing is verified or checked."""
    async with store.db.session() as session:
        row = await session.get(InboundMessage, inbound_id)
    if row is None or row.status != "pending":
        return
    raw = await store.blobs.get(row.blob_key)
    filing = Filing(role="inbox")
    if inspection is not None and row.source in CHECKED_SOURCES:
        try:
            filing = await _inspect(store, row, raw, inspection)
        except ContentCheckUnavailable as exc:
            log.warning("inbound %s put off: %s", row.id, exc.message)
            await inbound.put_off(store, row.id, f"content check unavailable: {exc.message}")
            return
    stored, key = raw, row.blob_key
    if filing.trace_fields:
        stored = add_trace_fields(raw, filing.trace_fields, store.settings.hostname)
        key = await store.blobs.put(stored)
    parsed = await parse_bounded(stored)
    attachment_keys = await save_attachments(store.blobs, parsed)
    async with transaction(store) as session:
        if await inbound.claim_for_processing(session, inbound_id) is None:
            return
        await register_blob(session, key, len(stored))
        await store_content(session, key, parsed, attachment_keys, filing.metadata)
        await index_parsed(session, key, parsed)
        for address in dict.fromkeys(a.lower() for a in row.rcpt_to):
            user = await find_user(session, address)
            if user is None:
                log.warning("inbound %s: recipient %s no longer exists; skipped", row.id, address)
                continue
            try:
                mailbox = await mailbox_by_role(session, user.id, filing.role)
            except NotFound:  # an account from before Junk existed: never lose the mail
                mailbox = await mailbox_by_role(session, user.id, "inbox")
            await add_copy(
                session,
                user_id=user.id,
                mailbox=mailbox,
                raw_key=key,
                size=len(stored),
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
    await _cache_content(store, key, parsed, attachment_keys, filing.metadata)
    INBOUND_FILED.labels(filing.role).inc()
    log.info(
        "inbound %s filed in %s for %d recipient(s)%s",
        row.id,
        filing.role,
        len(row.rcpt_to),
        f" ({'; '.join(filing.reasons)})" if filing.reasons else "",
    )


async def _inspect(
    store: Storage, row: InboundMessage, raw: bytes, inspection: Inspection
) -> Filing:
    """Authentication and content check; raises ContentCheckUnavailable to retry later."""
    auth, verdict = await asyncio.gather(
        verify(
            raw,
            ip=row.peer,
            helo=row.helo,
            mail_from=row.mail_from,
            authserv_id=store.settings.hostname,
            resolver=inspection.resolver,
        ),
        inspection.content_check.check(raw),
    )
    return decide(auth, verdict)


async def parse_bounded(raw: bytes) -> ParsedMessage:
    """Parse in a thread; past PARSE_SECONDS keep the headers only.

    A thread cannot be stopped, so a parse that overruns finishes in the background and its
    result is dropped; the part and depth caps bound how long that can be.
    """
    try:
        return await asyncio.wait_for(asyncio.to_thread(parse_message, raw), PARSE_SECONDS)
    except TimeoutError:
        reason = f"parsing took over {PARSE_SECONDS:g} s; headers only"
        return await asyncio.to_thread(parse_headers, raw, reason)


async def _cache_content(
    store: Storage,
    key: str,
    parsed: ParsedMessage,
    attachment_keys: list[str],
    metadata: dict[str, Any],
) -> None:
    """Put the new message's content where the gateway looks first (``content:{blob key}``).

    New mail is what gets read next; the entry has the shape the gateway's message route
    builds from the database (``gateway/routes/messages.py``), with the attachment ids
    ``store_content`` gives. A cache failure costs a database read later, nothing else.
    """
    entry = {
        "text": parsed.text,
        "html": parsed.html,
        "headers": {
            "message_id": parsed.message_id,
            "in_reply_to": parsed.in_reply_to,
            "references": parsed.references,
            **metadata,
        },
        "attachments": [
            {
                "id": f"{key[:28]}{position:04x}",
                "filename": attachment.filename[:255],
                "content_type": attachment.content_type[:255],
                "size": len(attachment.data),
            }
            for position, (attachment, _key) in enumerate(
                zip(parsed.attachments, attachment_keys, strict=True)
            )
        ],
    }
    try:
        await store.cache.set(f"content:{key}", json.dumps(entry).encode(), ttl=CONTENT_CACHE_TTL)
    except Exception:
        log.warning("could not cache the content of %s", key, exc_info=True)


class Processor:
    """Consumers of the incoming queue plus the sweeper that makes lost hints harmless."""

    name = "processor"

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.inspection: Inspection | None = None
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
        # Reading resolv.conf is file I/O; the checker lives from start to stop.
        resolver = await asyncio.to_thread(make_resolver, self.store.settings)
        self.inspection = Inspection(open_content_check(self.store.settings), resolver)
        self.consumers.start()
        return []

    async def stop(self, grace: float) -> None:
        await self.consumers.stop(grace)
        if self.inspection is not None:
            await self.inspection.content_check.close()

    async def _handle(self, job: Job) -> None:
        inbound_id = str(job.payload["inbound_id"])
        with message_context(inbound_id):
            await process_inbound(self.store, inbound_id, self.inspection)

    async def _find_lost(self, received_before: datetime) -> list[dict[str, Any]]:
        async with self.store.db.session() as session:
            ids = await inbound.stale_pending(session, received_before, limit=1000)
        return [{"inbound_id": inbound_id} for inbound_id in ids]
