"""Messages: stored content, copies in mailboxes, threads, listing and counts."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import InvalidInput, NotFound
from postroom.message import ParsedMessage
from storage.blobs import BlobStore
from storage.db.database import insert_ignoring_duplicates
from storage.db.models import Attachment, Blob, Mailbox, Message, MessageContent, Thread
from storage.db.types import utcnow
from storage.transaction import record_change

__all__ = [
    "MessagePage",
    "add_copy",
    "get_message",
    "list_messages",
    "mailbox_counts",
    "message_summary",
    "register_blob",
    "save_attachments",
    "store_content",
]

SUBJECT_THREAD_WINDOW = timedelta(days=30)


async def register_blob(session: AsyncSession, key: str, size: int) -> None:
    await session.execute(
        insert_ignoring_duplicates(session, Blob).values(key=key, size=size, created_at=utcnow())
    )


async def save_attachments(blobs: BlobStore, parsed: ParsedMessage) -> list[str]:
    """Write each attachment as its own blob before the transaction that refers to them."""
    return [await blobs.put(attachment.data) for attachment in parsed.attachments]


async def store_content(
    session: AsyncSession, raw_key: str, parsed: ParsedMessage, attachment_keys: list[str]
) -> None:
    """Record what parsing gave for ``raw_key``; a no-op when another copy did so first."""
    await session.execute(
        insert_ignoring_duplicates(session, MessageContent).values(
            blob_key=raw_key,
            text_body=parsed.text,
            html_body=parsed.html,
            headers={
                "message_id": parsed.message_id,
                "in_reply_to": parsed.in_reply_to,
                "references": parsed.references,
            },
            defects=parsed.defects,
        )
    )
    for position, (attachment, key) in enumerate(
        zip(parsed.attachments, attachment_keys, strict=True)
    ):
        await register_blob(session, key, len(attachment.data))
        await session.execute(
            insert_ignoring_duplicates(session, Attachment).values(
                id=f"{raw_key[:28]}{position:04x}",
                content_key=raw_key,
                position=position,
                blob_key=key,
                filename=attachment.filename[:255],
                content_type=attachment.content_type[:255],
                size=len(attachment.data),
                content_id=attachment.content_id,
            )
        )


async def _resolve_thread(
    session: AsyncSession, user_id: str, parsed: ParsedMessage, when: datetime
) -> str:
    """Thread by Message-ID references, falling back to the subject of a reply."""
    refs = [r for r in (parsed.in_reply_to, *parsed.references) if r]
    thread_id: str | None = None
    if refs:
        thread_id = await session.scalar(
            select(Message.thread_id)
            .where(Message.user_id == user_id, Message.message_id_header.in_(refs))
            .limit(1)
        )
    key = parsed.thread_subject[:255]
    if thread_id is None and parsed.is_reply and key:
        thread_id = await session.scalar(
            select(Thread.id)
            .where(
                Thread.user_id == user_id,
                Thread.subject_key == key,
                Thread.last_message_at >= when - SUBJECT_THREAD_WINDOW,
            )
            .order_by(Thread.last_message_at.desc())
            .limit(1)
        )
    if thread_id is None:
        thread = Thread(user_id=user_id, subject_key=key, last_message_at=when)
        session.add(thread)
        await session.flush()
        return thread.id
    await session.execute(update(Thread).where(Thread.id == thread_id).values(last_message_at=when))
    return thread_id


def message_summary(message: Message, mailbox: Mailbox) -> dict[str, Any]:
    """What an event or a list item says about a message."""
    return {
        "id": message.id,
        "mailbox": mailbox.role or mailbox.name,
        "mailbox_id": mailbox.id,
        "thread": message.thread_id,
        "from": {"name": message.from_name, "address": message.from_address},
        "subject": message.subject,
        "snippet": message.snippet,
        "date": message.date.isoformat(),
        "seen": message.seen,
    }


async def add_copy(
    session: AsyncSession,
    *,
    user_id: str,
    mailbox: Mailbox,
    raw_key: str,
    size: int,
    parsed: ParsedMessage,
    inbound_id: str | None = None,
    bcc: list[str] | None = None,
    seen: bool = False,
    received_at: datetime | None = None,
) -> Message:
    """File a copy; ``received_at`` is when our server accepted it (the list order)."""
    now = received_at or utcnow()
    message = Message(
        user_id=user_id,
        mailbox_id=mailbox.id,
        thread_id=await _resolve_thread(session, user_id, parsed, now),
        blob_key=raw_key,
        inbound_id=inbound_id,
        message_id_header=parsed.message_id,
        subject=parsed.subject,
        from_name=parsed.from_name,
        from_address=parsed.from_address,
        to_addresses=parsed.to,
        cc_addresses=parsed.cc,
        bcc_addresses=bcc or [],
        date=parsed.date or now,
        received_at=now,
        size=size,
        snippet=parsed.snippet,
        has_attachments=bool(parsed.attachments),
        seen=seen,
    )
    session.add(message)
    await session.flush()
    await record_change(
        session, user_id, "mail.new", {"message": message_summary(message, mailbox)}
    )
    return message


@dataclass
class MessagePage:
    items: list[Message]
    next_cursor: str | None


def _encode_cursor(message: Message) -> str:
    raw = json.dumps([message.received_at.isoformat(), message.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        when, message_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(when), str(message_id)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "this cursor is malformed; use next_cursor as given", field="cursor"
        ) from exc


async def list_messages(
    session: AsyncSession, user_id: str, mailbox_id: str, *, limit: int, cursor: str | None
) -> MessagePage:
    """Newest first by arrival; keyset pagination keeps pages stable while mail arrives."""
    query = select(Message).where(Message.user_id == user_id, Message.mailbox_id == mailbox_id)
    if cursor:
        when, last_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Message.received_at < when,
                and_(Message.received_at == when, Message.id < last_id),
            )
        )
    rows = (
        await session.scalars(
            query.order_by(Message.received_at.desc(), Message.id.desc()).limit(limit + 1)
        )
    ).all()
    items = list(rows[:limit])
    return MessagePage(items, _encode_cursor(items[-1]) if len(rows) > limit else None)


async def get_message(session: AsyncSession, user_id: str, message_id: str) -> Message:
    message = await session.scalar(
        select(Message).where(Message.id == message_id, Message.user_id == user_id)
    )
    if message is None:
        raise NotFound(f"no message {message_id}")
    return message


async def mailbox_counts(session: AsyncSession, user_id: str) -> list[tuple[Mailbox, int, int]]:
    counts = (
        select(
            Message.mailbox_id,
            func.count().label("total"),
            func.sum(case((Message.seen.is_(False), 1), else_=0)).label("unread"),
        )
        .where(Message.user_id == user_id)
        .group_by(Message.mailbox_id)
        .subquery()
    )
    rows = await session.execute(
        select(Mailbox, counts.c.total, counts.c.unread)
        .outerjoin(counts, counts.c.mailbox_id == Mailbox.id)
        .where(Mailbox.user_id == user_id)
        .order_by(Mailbox.created_at, Mailbox.name)
    )
    return [(mailbox, int(total or 0), int(unread or 0)) for mailbox, total, unread in rows]
