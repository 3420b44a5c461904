"""Listing and reading messages. Every query is scoped to the signed-in user."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import CurrentUser, Store
from gateway.html import sanitize_html
from gateway.schemas import AttachmentOut, MessageDetail, MessageItem, MessageList, Person
from postroom.errors import NotFound
from storage.db.models import Attachment, Mailbox, Message, MessageContent
from storage.repositories.mail import get_message, list_messages

router = APIRouter(prefix="/messages", tags=["messages"])

CONTENT_CACHE_TTL = 3600.0


def _item(message: Message) -> MessageItem:
    return MessageItem(
        id=message.id,
        mailbox_id=message.mailbox_id,
        thread=message.thread_id,
        subject=message.subject,
        from_=Person(name=message.from_name, address=message.from_address),
        to=message.to_addresses,
        cc=message.cc_addresses,
        date=message.date,
        received_at=message.received_at,
        snippet=message.snippet,
        size=message.size,
        seen=message.seen,
        flagged=message.flagged,
        answered=message.answered,
        has_attachments=message.has_attachments,
    )


async def _mailbox(session: AsyncSession, user_id: str, name: str) -> Mailbox:
    """A mailbox by role (``inbox``), id, or name, of this user only."""
    mailbox = await session.scalar(
        select(Mailbox).where(
            Mailbox.user_id == user_id,
            or_(Mailbox.role == name.lower(), Mailbox.id == name, Mailbox.name == name),
        )
    )
    if mailbox is None:
        raise NotFound(f"no mailbox {name!r}; see GET /api/v1/mailboxes")
    return mailbox


@router.get("", response_model=MessageList, response_model_by_alias=True)
async def list_mailbox(
    store: Store,
    user: CurrentUser,
    mailbox: Annotated[
        str, Query(description="A role (inbox, sent, ...), a mailbox id or name.")
    ] = "inbox",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> MessageList:
    """Messages of one mailbox, newest first."""
    async with store.db.session() as session:
        box = await _mailbox(session, user.id, mailbox)
        page = await list_messages(session, user.id, box.id, limit=limit, cursor=cursor)
    return MessageList(items=[_item(m) for m in page.items], next_cursor=page.next_cursor)


async def _content(store: Store, session: AsyncSession, blob_key: str) -> dict[str, object]:
    """Parsed content is immutable per blob, so it is cached by blob key."""
    cache_key = f"content:{blob_key}"
    if (cached := await store.cache.get(cache_key)) is not None:
        result: dict[str, object] = json.loads(cached)
        return result
    content = await session.get(MessageContent, blob_key)
    attachments = (
        await session.scalars(
            select(Attachment)
            .where(Attachment.content_key == blob_key)
            .order_by(Attachment.position)
        )
    ).all()
    result = {
        "text": content.text_body if content else "",
        "html": content.html_body if content else "",
        "headers": content.headers if content else {},
        "attachments": [
            {"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size}
            for a in attachments
        ],
    }
    await store.cache.set(cache_key, json.dumps(result).encode(), ttl=CONTENT_CACHE_TTL)
    return result


@router.get("/{message_id}", response_model=MessageDetail, response_model_by_alias=True)
async def read_message(
    store: Store,
    user: CurrentUser,
    message_id: str,
    images: Annotated[bool, Query(description="Load remote images in the HTML body.")] = False,
) -> MessageDetail:
    async with store.db.session() as session:
        message = await get_message(session, user.id, message_id)
        content = await _content(store, session, message.blob_key)
    headers = content["headers"]
    assert isinstance(headers, dict)
    attachments = content["attachments"]
    assert isinstance(attachments, list)
    return MessageDetail(
        **_item(message).model_dump(),
        bcc=message.bcc_addresses,
        message_id=headers.get("message_id"),
        in_reply_to=headers.get("in_reply_to"),
        references=headers.get("references") or [],
        text=str(content["text"]),
        html=sanitize_html(str(content["html"]), allow_remote_images=images),
        attachments=[AttachmentOut(**a) for a in attachments],
    )


@router.get(
    "/{message_id}/raw",
    response_class=Response,
    responses={200: {"content": {"message/rfc822": {}}, "description": "The exact bytes stored."}},
)
async def raw_message(store: Store, user: CurrentUser, message_id: str) -> Response:
    async with store.db.session() as session:
        message = await get_message(session, user.id, message_id)
    raw = await store.blobs.get(message.blob_key)
    return Response(
        raw,
        media_type="message/rfc822",
        headers={
            "Content-Disposition": f'attachment; filename="{message.id}.eml"',
            "X-Content-Type-Options": "nosniff",
        },
    )
