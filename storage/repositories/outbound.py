"""Recording sends: the Sent copy, the outbound row and one delivery per recipient domain.

All of it is written in the caller's single transaction (a transactional outbox): after the
commit the message is durable and every recipient has a row saying what happens next. Local
recipients get an inbound row for the processors; other domains wait for smtp-out.

This is the hottest write path of the API (every ``POST /send``), so :func:`record_sends`
writes any number of sends at once (:mod:`storage.outbox` hands it the sends that arrive
together) with Core statements built once: one multi-row ``INSERT`` per table for the whole
batch, one ``UPDATE`` for every sender's change log, one read of every sender's Sent mailbox
with its counts. Only a reply costs a read of its own (its thread). The rows say what
``mail.store_content``, ``mail.add_copy`` and ``inbound.add_pending`` would write for each
send: content, the Sent copy in its thread, ``mail.new`` and ``mailbox.counts`` in the log.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Update

from postroom.errors import NotFound
from postroom.ids import new_id
from postroom.message import ParsedMessage
from storage.db.bulk_insert import TableRows, insert_all
from storage.db.models import (
    Attachment,
    Blob,
    Delivery,
    DeliveryRecipient,
    InboundMessage,
    Mailbox,
    Message,
    MessageContent,
    OutboundMessage,
    SendSchedule,
    Thread,
    User,
)
from storage.db.types import utcnow
from storage.repositories.mail import SUBJECT_THREAD_WINDOW, copy_row, message_summary
from storage.transaction import CHANGES, USERS, change_seq_bump, changes_after_bump

__all__ = [
    "NewSend",
    "RecordedSend",
    "Written",
    "WrittenDelivery",
    "WrittenSend",
    "record_sends",
    "send_status",
]


@dataclass(frozen=True)
class Written:
    """A row a batch wrote, as its callers need it: by id (the workers' hints, the tests)."""

    id: str


@dataclass(frozen=True)
class WrittenDelivery:
    """A delivery a batch wrote: the workers' hint names its id; it goes to one domain."""

    id: str
    domain: str


@dataclass(frozen=True)
class WrittenSend:
    """The outbound row of a send: its id (the API's answer), its raw blob and Sent copy."""

    id: str
    blob_key: str
    sent_message_id: str


@dataclass
class RecordedSend:
    """What a batch wrote for one send. Plain records, not ORM objects: built for every send
    on the gateway's busiest path, where making mapped instances cost several percent."""

    outbound: WrittenSend
    local: list[Written]
    """The inbound rows of its local recipients (one per local domain)."""
    remote: list[WrittenDelivery]
    """The deliveries smtp-out will make (one per remote domain)."""
    parsed: ParsedMessage | None = None
    """What the Sent copy was filed from, so the send's own hooks (the search index) need not
    read it back."""


@dataclass
class NewSend:
    """One send to record: its blobs are written, every check has passed."""

    sender: User
    raw_key: str
    size: int
    parsed: ParsedMessage
    attachment_keys: list[str]
    recipients: list[str]
    bcc: list[str]
    local_domains: set[str]
    due: datetime | None = None
    """An API send's due time: its deliveries wait until then, and it can be cancelled."""
    hold_local: bool = False
    """``due`` is still ahead: local inbound rows wait as ``scheduled``, not ``pending``."""


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


_MAILBOXES = _table(Mailbox).c
_MESSAGES = _table(Message).c
_BUMPS_WITH_SENT: dict[str, Update] = {}
CHANGES_PER_COPY = 2
"""``mail.new`` and ``mailbox.counts``: what filing a copy in Sent logs."""


def _bump_with_sent(dialect: str) -> Update:
    """The change log's ``change_seq`` bump for the senders (:func:`change_seq_bump`), also
    returning each one's Sent mailbox with its name, total and unread, read under the users'
    row locks in the same statement (one round trip, or one hand-off, for both; the counts
    are the mailbox's own columns, kept by triggers)."""
    statement = _BUMPS_WITH_SENT.get(dialect)
    if statement is None:
        # SQLAlchemy writes RETURNING's columns without their table, inside subqueries too,
        # where a bare "id" would be the mailbox's: the user's id is spelled out
        user_id: ColumnElement[str] = literal_column(f"{USERS.name}.id")
        sent = and_(_MAILBOXES.user_id == user_id, _MAILBOXES.role == "sent")
        statement = _BUMPS_WITH_SENT[dialect] = change_seq_bump(dialect).returning(
            *(select(column).where(sent).scalar_subquery() for column in _SENT_FIELDS)
        )
    return statement


_SENT_FIELDS = (_MAILBOXES.id, _MAILBOXES.name, _MAILBOXES.total, _MAILBOXES.unread)


_THREAD_BY_REFERENCE = (
    select(_MESSAGES.thread_id)
    .where(
        _MESSAGES.user_id == bindparam("user_id"),
        _MESSAGES.message_id_header.in_(bindparam("refs", expanding=True)),
    )
    .limit(1)
)
_THREADS = _table(Thread).c
_THREAD_BY_SUBJECT = (
    select(_THREADS.id)
    .where(
        _THREADS.user_id == bindparam("user_id"),
        _THREADS.subject_key == bindparam("key"),
        _THREADS.last_message_at >= bindparam("since"),
    )
    .order_by(_THREADS.last_message_at.desc())
    .limit(1)
)
_TOUCH_THREAD = (
    update(_table(Thread))
    .where(_THREADS.id == bindparam("thread_id"))
    .values(last_message_at=bindparam("when"))
)


async def record_sends(
    session: AsyncSession, sends: Sequence[NewSend], *, also: Sequence[TableRows] = ()
) -> list[RecordedSend]:
    """Record ``sends`` in the caller's transaction, in order; one result each. ``also``: more
    rows to write with theirs (the sends' search documents), after them."""
    now = utcnow()
    connection = await session.connection()
    copies, copy_rows = await _file_sent_copies(connection, session, sends, now)
    results: list[RecordedSend] = []
    outbound_rows: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    addressees: list[dict[str, Any]] = []
    inbound_rows: list[dict[str, Any]] = []
    schedules: list[dict[str, Any]] = []
    for send, copy in zip(sends, copies, strict=True):
        outbound = WrittenSend(new_id(), send.raw_key, copy)
        outbound_rows.append(
            {
                "id": outbound.id,
                "user_id": send.sender.id,
                "sender": send.sender.address,
                "blob_key": send.raw_key,
                "sent_message_id": copy,
                "created_at": now,
            }
        )
        result = RecordedSend(outbound, [], [], send.parsed)
        results.append(result)
        if send.due is not None:
            schedules.append({"outbound_id": outbound.id, "send_at": send.due})
        by_domain: dict[str, list[str]] = defaultdict(list)
        for address in send.recipients:
            by_domain[address.rsplit("@", 1)[1]].append(address)
        for domain, addresses in by_domain.items():
            is_local = domain in send.local_domains
            delivery = WrittenDelivery(new_id(), domain)
            deliveries.append(
                {
                    "id": delivery.id,
                    "outbound_id": outbound.id,
                    "domain": domain,
                    "local": is_local,
                    "status": "queued",
                    "attempts": 0,
                    "next_attempt_at": now if send.due is None else send.due,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            addressees += [
                {
                    "id": new_id(),
                    "delivery_id": delivery.id,
                    "address": address,
                    "status": "queued",
                    "updated_at": now,
                }
                for address in addresses
            ]
            if not is_local:
                result.remote.append(delivery)
                continue
            row = Written(new_id())
            result.local.append(row)
            inbound_rows.append(
                {
                    "id": row.id,
                    "blob_key": send.raw_key,
                    "mail_from": send.sender.address,
                    "rcpt_to": addresses,
                    "source": "api",
                    "delivery_id": delivery.id,
                    "received_at": now,
                    "status": "scheduled" if send.hold_local else "pending",
                }
            )
    # every row in one statement on PostgreSQL, one hand-off with the commit on SQLite
    await insert_all(
        connection,
        [
            *_content_rows(sends, now),
            *copy_rows,
            TableRows(_table(OutboundMessage), outbound_rows),
            TableRows(_table(Delivery), deliveries),
            TableRows(_table(DeliveryRecipient), addressees),
            TableRows(_table(InboundMessage), inbound_rows),
            TableRows(_table(SendSchedule), schedules),
            *also,
        ],
    )
    return results


def _content_rows(sends: Sequence[NewSend], now: datetime) -> list[TableRows]:
    """The blobs' rows and what parsing gave for each raw blob, as ``mail.store_content``
    writes them; nothing for content another copy recorded first."""
    blobs: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    attachments: list[dict[str, Any]] = []
    for send in sends:
        parsed = send.parsed
        blobs.append({"key": send.raw_key, "size": send.size, "created_at": now})
        contents.append(
            {
                "blob_key": send.raw_key,
                "text_body": parsed.text,
                "html_body": parsed.html,
                "headers": {
                    "message_id": parsed.message_id,
                    "in_reply_to": parsed.in_reply_to,
                    "references": parsed.references,
                },
                "defects": parsed.defects,
            }
        )
        for position, (attachment, key) in enumerate(
            zip(parsed.attachments, send.attachment_keys, strict=True)
        ):
            blobs.append({"key": key, "size": len(attachment.data), "created_at": now})
            attachments.append(
                {
                    "id": f"{send.raw_key[:28]}{position:04x}",
                    "content_key": send.raw_key,
                    "position": position,
                    "blob_key": key,
                    "filename": attachment.filename[:255],
                    "content_type": attachment.content_type[:255],
                    "size": len(attachment.data),
                    "content_id": attachment.content_id,
                }
            )
    return [
        TableRows(_table(Blob), blobs, ignore_duplicates=True),
        TableRows(_table(MessageContent), contents, ignore_duplicates=True),
        TableRows(_table(Attachment), attachments, ignore_duplicates=True),
    ]


async def _file_sent_copies(
    connection: AsyncConnection,
    session: AsyncSession,
    sends: Sequence[NewSend],
    now: datetime,
) -> tuple[list[str], list[TableRows]]:
    """Each sender's copy in Sent, logged as ``mail.new`` with the mailbox's new counts: the
    copies' ids, and the rows to insert (threads, messages, changes)."""
    copies_of = Counter(send.sender.id for send in sends)
    by_count: dict[int, list[str]] = defaultdict(list)
    for user_id in sorted(copies_of):
        by_count[CHANGES_PER_COPY * copies_of[user_id]].append(user_id)
    boxes: dict[str, tuple[Mailbox, int, int]] = {}
    last: dict[str, int] = {}
    for count, users in by_count.items():
        for user_id, seq, box_id, name, total, unread in await connection.execute(
            _bump_with_sent(connection.dialect.name), {"ids": users, "n": count}
        ):
            last[user_id] = seq
            if box_id is not None:
                box = Mailbox(id=box_id, user_id=user_id, name=name, role="sent")
                boxes[user_id] = (box, int(total or 0), int(unread or 0))
        if missing := set(users) - last.keys():
            raise NotFound(f"user {sorted(missing)[0]} vanished while sending")
    new_threads: list[dict[str, Any]] = []
    batch = _BatchThreads()
    messages: list[dict[str, Any]] = []
    changes: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for send in sends:
        user_id, parsed = send.sender.id, send.parsed
        if user_id not in boxes:
            raise NotFound(f"user {user_id} has no sent mailbox")
        mailbox, total, unread = boxes[user_id]
        thread_id = await _existing_thread(connection, user_id, parsed, now, batch)
        if thread_id is None:
            thread_id = new_id()
            new_threads.append(
                {
                    "id": thread_id,
                    "user_id": user_id,
                    "subject_key": parsed.thread_subject[:255],
                    "last_message_at": now,
                }
            )
        message = copy_row(
            user_id=user_id,
            mailbox_id=mailbox.id,
            thread_id=thread_id,
            raw_key=send.raw_key,
            size=send.size,
            parsed=parsed,
            received_at=now,
            bcc=send.bcc,
            seen=True,
        )
        messages.append(message)
        batch.filed(user_id, parsed, thread_id)
        total += 1  # the copy is seen: unread stays
        boxes[user_id] = (mailbox, total, unread)
        counts = {
            "id": mailbox.id,
            "name": mailbox.name,
            "role": mailbox.role,
            "total": total,
            "unread": unread,
        }
        changes[user_id] += [
            ("mail.new", {"message": message_summary(message, mailbox)}),
            ("mailbox.counts", {"mailbox": counts}),
        ]
    # the bump above took CHANGES_PER_COPY numbers a copy: exactly what was logged
    assert all(len(logged) == CHANGES_PER_COPY * copies_of[u] for u, logged in changes.items())
    _events, change_rows = changes_after_bump(session, changes, last)
    rows = [
        TableRows(_table(Thread), new_threads),
        TableRows(_table(Message), messages),
        TableRows(CHANGES, change_rows),
    ]
    return [message["id"] for message in messages], rows


@dataclass
class _BatchThreads:
    """The threads of the copies filed earlier in the same batch, not yet in the database:
    a later send of the batch must find them as it would after their commit."""

    by_message_id: dict[tuple[str, str], str] = field(default_factory=dict)
    by_subject: dict[tuple[str, str], str] = field(default_factory=dict)

    def filed(self, user_id: str, parsed: ParsedMessage, thread_id: str) -> None:
        if parsed.message_id:
            self.by_message_id[(user_id, parsed.message_id)] = thread_id
        self.by_subject[(user_id, parsed.thread_subject[:255])] = thread_id


async def _existing_thread(
    connection: AsyncConnection,
    user_id: str,
    parsed: ParsedMessage,
    when: datetime,
    batch: _BatchThreads,
) -> str | None:
    """As ``mail.add_copy`` threads: by references, then a reply's subject within
    :data:`SUBJECT_THREAD_WINDOW` (touching that thread); ``None``: a new thread."""
    refs = [r for r in (parsed.in_reply_to, *parsed.references) if r]
    thread_id = next(
        (t for r in refs if (t := batch.by_message_id.get((user_id, r))) is not None), None
    )
    if refs and thread_id is None:
        thread_id = (
            await connection.execute(_THREAD_BY_REFERENCE, {"user_id": user_id, "refs": refs})
        ).scalar()
    key = parsed.thread_subject[:255]
    if thread_id is None and parsed.is_reply and key:
        thread_id = batch.by_subject.get((user_id, key))
        if thread_id is not None:
            return thread_id  # new in this batch: last_message_at is already now
        thread_id = (
            await connection.execute(
                _THREAD_BY_SUBJECT,
                {"user_id": user_id, "key": key, "since": when - SUBJECT_THREAD_WINDOW},
            )
        ).scalar()
    if thread_id is not None:
        await connection.execute(_TOUCH_THREAD, {"thread_id": thread_id, "when": when})
    return thread_id


async def send_status(
    session: AsyncSession, user_id: str, outbound_id: str
) -> tuple[OutboundMessage, list[tuple[Delivery, DeliveryRecipient]]]:
    """A send of ``user_id`` with each recipient and its delivery; someone else's is NotFound."""
    outbound = await session.scalar(
        select(OutboundMessage).where(
            OutboundMessage.id == outbound_id, OutboundMessage.user_id == user_id
        )
    )
    if outbound is None:
        raise NotFound(f"no send {outbound_id}")
    rows = await session.execute(
        select(Delivery, DeliveryRecipient)
        .join(DeliveryRecipient, DeliveryRecipient.delivery_id == Delivery.id)
        .where(Delivery.outbound_id == outbound.id)
        .order_by(DeliveryRecipient.address)
    )
    return outbound, [(delivery, recipient) for delivery, recipient in rows]
