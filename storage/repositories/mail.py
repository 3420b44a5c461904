"""Messages: stored content, copies in mailboxes, threads, listing, counts, and changes to them.

Every write here that a user can see (a new copy, flags, a move, a delete, a folder created,
renamed or deleted) records its change in the user's change log inside the caller's transaction
(:func:`storage.transaction.record_change`), with the kinds and payloads
``storage/repositories/changes.py`` fixes. Whenever a mailbox's total or unread count moves,
a ``mailbox.counts`` change follows, so a client never has to recount.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import AlreadyExists, InvalidInput, NotFound
from postroom.ids import new_id
from postroom.message import ParsedMessage
from storage.blobs import BlobStore
from storage.db.database import insert_ignoring_duplicates
from storage.db.models import Attachment, Blob, Mailbox, Message, MessageContent, Thread
from storage.db.types import utcnow
from storage.transaction import record_change, record_changes

__all__ = [
    "LIST_COLUMNS",
    "SPECIAL_ROLES",
    "MessagePage",
    "add_copy",
    "create_mailbox",
    "delete_mailbox",
    "delete_messages",
    "find_mailbox",
    "get_attachment",
    "get_mailbox",
    "get_message",
    "get_messages",
    "list_messages",
    "mailbox_counts",
    "message_summary",
    "move_messages",
    "record_mailbox_counts",
    "register_blob",
    "rename_mailbox",
    "save_attachments",
    "set_flags",
    "store_content",
    "thread_messages",
]

SPECIAL_ROLES = ("inbox", "sent", "drafts", "trash", "junk", "archive")
MAILBOX_NAME_MAX = 255

SUBJECT_THREAD_WINDOW = timedelta(days=30)


async def register_blob(session: AsyncSession, key: str, size: int) -> None:
    await session.execute(
        insert_ignoring_duplicates(session, Blob).values(key=key, size=size, created_at=utcnow())
    )


async def save_attachments(blobs: BlobStore, parsed: ParsedMessage) -> list[str]:
    """Write each attachment as its own blob before the transaction that refers to them."""
    return [await blobs.put(attachment.data) for attachment in parsed.attachments]


async def store_content(
    session: AsyncSession,
    raw_key: str,
    parsed: ParsedMessage,
    attachment_keys: list[str],
    metadata: dict[str, Any] | None = None,
) -> None:
    """Record what parsing gave for ``raw_key``; a no-op when another copy did so first.

    ``metadata`` joins the headers summary: the processors' ``authentication`` (SPF, DKIM,
    DMARC) and ``spam`` (score, threshold, rules) results for mail from other servers.
    """
    await session.execute(
        insert_ignoring_duplicates(session, MessageContent).values(
            blob_key=raw_key,
            text_body=parsed.text,
            html_body=parsed.html,
            headers={
                "message_id": parsed.message_id,
                "in_reply_to": parsed.in_reply_to,
                "references": parsed.references,
                **(metadata or {}),
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


def message_summary(row: Mapping[str, Any], mailbox: Mailbox) -> dict[str, Any]:
    """What an event or a list item says about a message, from its row's values."""
    return {
        "id": row["id"],
        "mailbox": mailbox.role or mailbox.name,
        "mailbox_id": mailbox.id,
        "thread": row["thread_id"],
        "from": {"name": row["from_name"], "address": row["from_address"]},
        "subject": row["subject"],
        "snippet": row["snippet"],
        "date": row["date"].isoformat(),
        "seen": row["seen"],
    }


def copy_row(
    *,
    user_id: str,
    mailbox_id: str,
    thread_id: str,
    raw_key: str,
    size: int,
    parsed: ParsedMessage,
    received_at: datetime,
    inbound_id: str | None = None,
    bcc: list[str] | None = None,
    seen: bool = False,
) -> dict[str, Any]:
    """The ``messages`` row of a user's copy, as its headers describe it, id included.

    The one mapping from a parsed message to a row: :func:`add_copy` makes a ``Message`` of
    it, the batched API send (``repositories.outbound``) inserts many with one statement
    (plain values: building ORM objects only to read them back cost that hot path more
    than the insert).
    """
    return {
        "id": new_id(),
        "user_id": user_id,
        "mailbox_id": mailbox_id,
        "thread_id": thread_id,
        "blob_key": raw_key,
        "inbound_id": inbound_id,
        "message_id_header": parsed.message_id,
        "subject": parsed.subject,
        "from_name": parsed.from_name,
        "from_address": parsed.from_address,
        "to_addresses": parsed.to,
        "cc_addresses": parsed.cc,
        "bcc_addresses": bcc or [],
        "date": parsed.date or received_at,
        "received_at": received_at,
        "size": size,
        "snippet": parsed.snippet,
        "has_attachments": bool(parsed.attachments),
        "seen": seen,
        "flagged": False,
        "answered": False,
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
    row = copy_row(
        user_id=user_id,
        mailbox_id=mailbox.id,
        thread_id=await _resolve_thread(session, user_id, parsed, now),
        raw_key=raw_key,
        size=size,
        parsed=parsed,
        received_at=now,
        inbound_id=inbound_id,
        bcc=bcc,
        seen=seen,
    )
    message = Message(**row)
    session.add(message)
    await session.flush()
    new = ("mail.new", {"message": message_summary(row, mailbox)})
    await record_changes(
        session, user_id, [new, *await _counts_changes(session, user_id, [mailbox])]
    )
    return message


LIST_COLUMNS = (
    Message.id,
    Message.mailbox_id,
    Message.thread_id,
    Message.subject,
    Message.from_name,
    Message.from_address,
    Message.to_addresses,
    Message.cc_addresses,
    Message.date,
    Message.received_at,
    Message.snippet,
    Message.size,
    Message.seen,
    Message.flagged,
    Message.answered,
    Message.has_attachments,
)
"""What a list item shows, read as plain rows: loading 50 ORM objects (identity map, state,
every column, Bcc decoded as JSON) cost more than the query."""
ListRow = Row[*tuple[Any, ...]]
"""One message's LIST_COLUMNS, by column name."""


@dataclass
class MessagePage:
    items: Sequence[ListRow]
    next_cursor: str | None


def _encode_cursor(message: Message | ListRow) -> str:
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


_PAGE = (
    select(*LIST_COLUMNS)
    .where(Message.user_id == bindparam("user_id"), Message.mailbox_id == bindparam("mailbox_id"))
    .order_by(Message.received_at.desc(), Message.id.desc())
    .limit(bindparam("limit"))
)
_PAGE_AFTER = _PAGE.where(
    or_(
        Message.received_at < bindparam("when"),
        and_(Message.received_at == bindparam("when"), Message.id < bindparam("last_id")),
    )
)
"""Built once: composing the statement anew cost as much as running it."""


async def list_messages(
    session: AsyncSession, user_id: str, mailbox_id: str, *, limit: int, cursor: str | None
) -> MessagePage:
    """Newest first by arrival; keyset pagination keeps pages stable while mail arrives."""
    params: dict[str, Any] = {"user_id": user_id, "mailbox_id": mailbox_id, "limit": limit + 1}
    if cursor:
        params["when"], params["last_id"] = _decode_cursor(cursor)
    rows = (await session.execute(_PAGE_AFTER if cursor else _PAGE, params)).all()
    items = rows[:limit]
    return MessagePage(items, _encode_cursor(items[-1]) if len(rows) > limit else None)


async def get_message(session: AsyncSession, user_id: str, message_id: str) -> Message:
    message = await session.scalar(
        select(Message).where(Message.id == message_id, Message.user_id == user_id)
    )
    if message is None:
        raise NotFound(f"no message {message_id}")
    return message


async def mailbox_counts(session: AsyncSession, user_id: str) -> list[tuple[Mailbox, int, int]]:
    """Each mailbox of the user with its total and unread, as the triggers keep them
    (migration 0016): one row a mailbox, however much mail it holds."""
    rows = await session.execute(
        select(Mailbox, Mailbox.total, Mailbox.unread)
        .where(Mailbox.user_id == user_id)
        .order_by(Mailbox.created_at, Mailbox.name)
    )
    return [(mailbox, total, unread) for mailbox, total, unread in rows]


async def _counts(
    session: AsyncSession, user_id: str, mailbox_ids: list[str]
) -> dict[str, tuple[int, int]]:
    """Total and unread of each of these mailboxes, one select for all, read from the database
    (never a loaded Mailbox, whose copy the triggers do not refresh)."""
    if not mailbox_ids:
        return {}
    rows = await session.execute(
        select(Mailbox.id, Mailbox.total, Mailbox.unread).where(
            Mailbox.id.in_(mailbox_ids), Mailbox.user_id == user_id
        )
    )
    return {mailbox_id: (total, unread) for mailbox_id, total, unread in rows}


async def record_mailbox_counts(
    session: AsyncSession, user_id: str, mailboxes: list[Mailbox], *, deleted: bool = False
) -> None:
    """Log each mailbox's current counts (``mailbox.counts``), once per distinct mailbox.

    A deleted mailbox is logged with zero counts and ``"deleted": true`` so a client drops it.
    """
    await record_changes(
        session, user_id, await _counts_changes(session, user_id, mailboxes, deleted=deleted)
    )


async def _counts_changes(
    session: AsyncSession, user_id: str, mailboxes: list[Mailbox], *, deleted: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """The ``mailbox.counts`` changes :func:`record_mailbox_counts` logs, for batching."""
    await session.flush()
    distinct = list({mailbox.id: mailbox for mailbox in mailboxes}.values())
    counts = {} if deleted else await _counts(session, user_id, [m.id for m in distinct])
    changes: list[tuple[str, dict[str, Any]]] = []
    for mailbox in distinct:
        total, unread = counts.get(mailbox.id, (0, 0))
        payload: dict[str, Any] = {
            "id": mailbox.id,
            "name": mailbox.name,
            "role": mailbox.role,
            "total": total,
            "unread": unread,
        }
        if deleted:
            payload["deleted"] = True
        changes.append(("mailbox.counts", {"mailbox": payload}))
    return changes


def _update_payload(message: Message, mailbox: Mailbox) -> dict[str, Any]:
    return {
        "message": {
            "id": message.id,
            "mailbox": mailbox.role or mailbox.name,
            "mailbox_id": mailbox.id,
            "thread": message.thread_id,
            "seen": message.seen,
            "flagged": message.flagged,
            "answered": message.answered,
        }
    }


# -- mailboxes -------------------------------------------------------------------------------


async def get_mailbox(session: AsyncSession, user_id: str, mailbox_id: str) -> Mailbox:
    mailbox = await session.scalar(
        select(Mailbox).where(Mailbox.id == mailbox_id, Mailbox.user_id == user_id)
    )
    if mailbox is None:
        raise NotFound(f"no mailbox {mailbox_id}; see GET /api/v1/mailboxes")
    return mailbox


_MAILBOX_BY_REF = select(Mailbox).where(
    Mailbox.user_id == bindparam("user_id"),
    or_(
        Mailbox.id == bindparam("ref"),
        Mailbox.role == bindparam("role"),
        Mailbox.name == bindparam("ref"),
    ),
)


async def find_mailbox(session: AsyncSession, user_id: str, ref: str) -> Mailbox:
    """A mailbox of this user by id, then role (``inbox``), then exact name."""
    params = {"user_id": user_id, "ref": ref, "role": ref.lower()}
    rows = (await session.scalars(_MAILBOX_BY_REF, params)).all()
    ranked = sorted(rows, key=lambda m: (m.id != ref, m.role != ref.lower(), m.name != ref))
    if ranked:
        return ranked[0]
    raise NotFound(f"no mailbox {ref!r}; see GET /api/v1/mailboxes")


def _folder_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > MAILBOX_NAME_MAX:
        raise InvalidInput(f"a mailbox name has 1 to {MAILBOX_NAME_MAX} characters", field="name")
    if any(ord(c) < 32 or ord(c) == 127 for c in cleaned):
        raise InvalidInput("a mailbox name cannot contain control characters", field="name")
    return cleaned


async def _check_name_free(
    session: AsyncSession, user_id: str, name: str, *, except_id: str | None = None
) -> None:
    """Names are unique per user, ignoring case, and never shadow a special-use role."""
    if name.lower() in SPECIAL_ROLES:
        raise AlreadyExists(f"{name!r} is reserved for a special mailbox; choose another name")
    clash = await session.scalar(
        select(Mailbox.id).where(
            Mailbox.user_id == user_id,
            func.lower(Mailbox.name) == name.lower(),
            Mailbox.id != (except_id or ""),
        )
    )
    if clash is not None:
        raise AlreadyExists(f"you already have a mailbox named {name!r}")


async def create_mailbox(session: AsyncSession, user_id: str, name: str) -> Mailbox:
    cleaned = _folder_name(name)
    await _check_name_free(session, user_id, cleaned)
    mailbox = Mailbox(user_id=user_id, name=cleaned, role=None)
    session.add(mailbox)
    await record_mailbox_counts(session, user_id, [mailbox])
    return mailbox


def _user_folder(mailbox: Mailbox, doing: str) -> None:
    if mailbox.role is not None:
        raise InvalidInput(
            f"{mailbox.name} is a special mailbox ({mailbox.role}) and cannot be {doing}",
            field="mailbox_id",
        )


async def rename_mailbox(
    session: AsyncSession, user_id: str, mailbox_id: str, name: str
) -> Mailbox:
    mailbox = await get_mailbox(session, user_id, mailbox_id)
    _user_folder(mailbox, "renamed")
    cleaned = _folder_name(name)
    await _check_name_free(session, user_id, cleaned, except_id=mailbox.id)
    mailbox.name = cleaned
    await record_mailbox_counts(session, user_id, [mailbox])
    return mailbox


async def delete_mailbox(session: AsyncSession, user_id: str, mailbox_id: str) -> int:
    """Delete a user folder; its messages go to Trash (nothing is lost by a click).

    Returns how many messages were moved.
    """
    mailbox = await get_mailbox(session, user_id, mailbox_id)
    _user_folder(mailbox, "deleted")
    ids = list(await session.scalars(select(Message.id).where(Message.mailbox_id == mailbox.id)))
    if ids:
        trash = await find_mailbox(session, user_id, "trash")
        await move_messages(session, user_id, ids, trash)
    await session.delete(mailbox)
    await record_mailbox_counts(session, user_id, [mailbox], deleted=True)
    return len(ids)


# -- messages --------------------------------------------------------------------------------


async def get_messages(
    session: AsyncSession, user_id: str, message_ids: list[str], *, field: str = "ids"
) -> list[Message]:
    """Every one of ``message_ids``, of this user, in the given order; all or nothing.

    One id that is not this user's is a :class:`NotFound` naming it, so a bulk action changes
    nothing rather than part of what was asked.
    """
    wanted = list(dict.fromkeys(message_ids))
    found = {
        m.id: m
        for m in await session.scalars(
            select(Message).where(Message.user_id == user_id, Message.id.in_(wanted))
        )
    }
    for index, message_id in enumerate(message_ids):
        if message_id not in found:
            raise NotFound(f"no message {message_id}", field=f"{field}[{index}]")
    return [found[m] for m in wanted]


async def _mailboxes_of(session: AsyncSession, messages: list[Message]) -> dict[str, Mailbox]:
    ids = {m.mailbox_id for m in messages}
    return {m.id: m for m in await session.scalars(select(Mailbox).where(Mailbox.id.in_(ids)))}


async def set_flags(
    session: AsyncSession,
    user_id: str,
    message_ids: list[str],
    *,
    seen: bool | None = None,
    flagged: bool | None = None,
    answered: bool | None = None,
) -> list[Message]:
    """Set the given flags; a ``mail.updated`` per message that changed, counts if unread did."""
    messages = await get_messages(session, user_id, message_ids)
    boxes = await _mailboxes_of(session, messages)
    wanted = {"seen": seen, "flagged": flagged, "answered": answered}
    recount: list[Mailbox] = []
    for message in messages:
        changed = False
        for flag, value in wanted.items():
            if value is not None and getattr(message, flag) != value:
                setattr(message, flag, value)
                changed = True
                if flag == "seen":
                    recount.append(boxes[message.mailbox_id])
        if changed:
            await record_change(
                session,
                user_id,
                "mail.updated",
                _update_payload(message, boxes[message.mailbox_id]),
            )
    if recount:
        await record_mailbox_counts(session, user_id, recount)
    return messages


async def move_messages(
    session: AsyncSession, user_id: str, message_ids: list[str], target: Mailbox
) -> list[Message]:
    messages = await get_messages(session, user_id, message_ids)
    boxes = await _mailboxes_of(session, messages)
    touched: list[Mailbox] = []
    for message in messages:
        if message.mailbox_id == target.id:
            continue
        touched.append(boxes[message.mailbox_id])
        message.mailbox_id = target.id
        await record_change(session, user_id, "mail.updated", _update_payload(message, target))
    if touched:
        await record_mailbox_counts(session, user_id, [*touched, target])
    return messages


async def delete_messages(
    session: AsyncSession, user_id: str, message_ids: list[str]
) -> tuple[list[str], list[str]]:
    """Move to Trash; what is already in Trash goes for good. Returns (trashed, deleted) ids."""
    messages = await get_messages(session, user_id, message_ids)
    trash = await find_mailbox(session, user_id, "trash")
    boxes = await _mailboxes_of(session, messages)
    to_trash = [m.id for m in messages if m.mailbox_id != trash.id]
    gone = [m for m in messages if m.mailbox_id == trash.id]
    if to_trash:
        await move_messages(session, user_id, to_trash, trash)
    if gone:
        await session.execute(delete(Message).where(Message.id.in_([m.id for m in gone])))
        for message in gone:
            box = boxes[message.mailbox_id]
            await record_change(
                session,
                user_id,
                "mail.deleted",
                {
                    "message": {
                        "id": message.id,
                        "mailbox": box.role or box.name,
                        "mailbox_id": box.id,
                        "thread": message.thread_id,
                    }
                },
            )
        await record_mailbox_counts(session, user_id, [trash])
    return to_trash, [m.id for m in gone]


async def thread_messages(session: AsyncSession, user_id: str, thread_id: str) -> list[Message]:
    """The messages of one of this user's threads, oldest first."""
    messages = list(
        await session.scalars(
            select(Message)
            .where(Message.user_id == user_id, Message.thread_id == thread_id)
            .order_by(Message.date, Message.received_at, Message.id)
        )
    )
    if not messages:
        raise NotFound(f"no thread {thread_id}")
    return messages


async def get_attachment(
    session: AsyncSession, user_id: str, message_id: str, attachment_id: str
) -> Attachment:
    """An attachment of one of this user's messages; any other is a :class:`NotFound`."""
    message = await get_message(session, user_id, message_id)
    attachment = await session.scalar(
        select(Attachment).where(
            Attachment.id == attachment_id, Attachment.content_key == message.blob_key
        )
    )
    if attachment is None:
        raise NotFound(f"message {message_id} has no attachment {attachment_id}")
    return attachment
