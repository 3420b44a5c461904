"""Drafts: a message being written, kept as a copy in the user's Drafts mailbox.

The draft row keeps the request as the API took it (so editing and sending start from what the
user wrote, bcc and attachments included); the copy in Drafts is what mail clients see. An
update files a new copy and discards the old one, in one transaction; sending discards the
copy inside the send's own transaction (see :func:`storage.outbox.submit`'s ``on_record``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import NotFound
from postroom.message import ParsedMessage
from storage.db.models import Draft, Mailbox, Message
from storage.db.types import utcnow
from storage.repositories.accounts import mailbox_by_role
from storage.repositories.mail import (
    add_copy,
    record_mailbox_counts,
    register_blob,
    store_content,
)
from storage.transaction import record_change

__all__ = ["DraftCopy", "discard_copy", "get_draft", "list_drafts", "remove", "save"]


@dataclass
class DraftCopy:
    """A composed draft ready to be filed: its blobs are already in the blob store."""

    raw_key: str
    size: int
    parsed: ParsedMessage
    attachment_keys: list[str]
    bcc: list[str]


async def get_draft(session: AsyncSession, user_id: str, draft_id: str) -> Draft:
    draft = await session.scalar(
        select(Draft).where(Draft.id == draft_id, Draft.user_id == user_id)
    )
    if draft is None:
        raise NotFound(f"no draft {draft_id}")
    return draft


async def list_drafts(session: AsyncSession, user_id: str) -> list[Draft]:
    rows = await session.scalars(
        select(Draft).where(Draft.user_id == user_id).order_by(Draft.updated_at.desc())
    )
    return list(rows)


async def save(
    session: AsyncSession,
    user_id: str,
    copy: DraftCopy,
    payload: dict[str, Any],
    draft: Draft | None = None,
) -> Draft:
    """File ``copy`` in Drafts; a new draft, or ``draft`` with its old copy discarded."""
    await register_blob(session, copy.raw_key, copy.size)
    await store_content(session, copy.raw_key, copy.parsed, copy.attachment_keys)
    drafts = await mailbox_by_role(session, user_id, "drafts")
    message = await add_copy(
        session,
        user_id=user_id,
        mailbox=drafts,
        raw_key=copy.raw_key,
        size=copy.size,
        parsed=copy.parsed,
        bcc=copy.bcc,
        seen=True,
    )
    if draft is None:
        draft = Draft(user_id=user_id, message_id=message.id, payload=payload)
        session.add(draft)
    else:
        await discard_copy(session, user_id, draft.message_id)
        draft.message_id, draft.payload, draft.updated_at = message.id, payload, utcnow()
    await record_mailbox_counts(session, user_id, [drafts])
    await session.flush()
    return draft


async def remove(session: AsyncSession, draft: Draft) -> None:
    """Delete the draft and its copy in Drafts."""
    await discard_copy(session, draft.user_id, draft.message_id)
    await session.execute(delete(Draft).where(Draft.id == draft.id))


async def discard_copy(session: AsyncSession, user_id: str, message_id: str | None) -> None:
    """Delete one copy for good (no Trash): a draft replaced or sent, a send cancelled."""
    if message_id is None:
        return
    message = await session.get(Message, message_id)
    if message is None or message.user_id != user_id:
        return  # the user deleted it already
    mailbox = await session.get_one(Mailbox, message.mailbox_id)
    await session.execute(delete(Message).where(Message.id == message_id))
    await record_change(
        session,
        user_id,
        "mail.deleted",
        {
            "message": {
                "id": message_id,
                "mailbox": mailbox.role or mailbox.name,
                "mailbox_id": mailbox.id,
                "thread": message.thread_id,
            }
        },
    )
    await record_mailbox_counts(session, user_id, [mailbox])
