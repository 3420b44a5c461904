"""Listing, reading, flagging, moving and deleting messages, one at a time or in bulk.

Every query is scoped to the signed-in user: another user's message id is a 404, exactly like
an id that never existed. Every change goes through :func:`storage.transaction.transaction`,
so it lands in the change log and is published only once committed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typing_extensions import TypedDict

from gateway.deps import CurrentUser, Store, change_seq_read
from gateway.disposition import attachment_headers
from gateway.html import sanitize_html
from gateway.page_cache import PageCache
from gateway.schemas import (
    AttachmentOut,
    BulkRequest,
    BulkResult,
    DeleteResult,
    FlagsUpdate,
    MessageDetail,
    MessageItem,
    MessageList,
    MoveRequest,
    Person,
)
from postroom.errors import InvalidInput
from storage.db.models import Attachment, Message, MessageContent
from storage.registry import Storage
from storage.repositories.changes import current_seq
from storage.repositories.mail import (
    MessagePage,
    delete_messages,
    find_mailbox,
    get_message,
    list_messages,
    move_messages,
    set_flags,
)
from storage.transaction import transaction

__all__ = ["message_item", "router"]

router = APIRouter(prefix="/messages", tags=["messages"])

CONTENT_CACHE_TTL = 3600.0
_pages = PageCache()
_NOT_YOURS: dict[int | str, dict[str, Any]] = {404: {"description": "No such message of yours."}}


class _PersonJSON(TypedDict):
    name: str
    address: str


_ItemJSON = TypedDict(
    "_ItemJSON",
    {
        "id": str,
        "mailbox_id": str,
        "thread": str,
        "subject": str,
        "from": _PersonJSON,
        "to": list[str],
        "cc": list[str],
        "date": datetime,
        "received_at": datetime,
        "snippet": str,
        "size": int,
        "seen": bool,
        "flagged": bool,
        "answered": bool,
        "has_attachments": bool,
    },
)


class _PageJSON(TypedDict):
    items: list[_ItemJSON]
    next_cursor: str | None


_PAGE_JSON = TypeAdapter(_PageJSON)


def _render(page: MessagePage) -> bytes:
    """``MessageList`` as JSON, straight from the rows: the same shape and value formats (one
    pydantic serializer), without building and validating 50 models first. The rows are
    unpacked by position (:data:`storage.repositories.mail.LIST_COLUMNS`): by name, each
    column is a lookup."""
    items: list[_ItemJSON] = []
    for (
        id_,
        mailbox_id,
        thread_id,
        subject,
        from_name,
        from_address,
        to,
        cc,
        date,
        received_at,
        snippet,
        size,
        seen,
        flagged,
        answered,
        has_attachments,
    ) in page.items:
        items.append(
            {
                "id": id_,
                "mailbox_id": mailbox_id,
                "thread": thread_id,
                "subject": subject,
                "from": {"name": from_name, "address": from_address},
                "to": to,
                "cc": cc,
                "date": date,
                "received_at": received_at,
                "snippet": snippet,
                "size": size,
                "seen": seen,
                "flagged": flagged,
                "answered": answered,
                "has_attachments": has_attachments,
            }
        )
    return _PAGE_JSON.dump_json({"items": items, "next_cursor": page.next_cursor})


def message_item(message: Message) -> MessageItem:
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


@router.get("", response_model=MessageList, response_model_by_alias=True)
async def list_mailbox(
    request: Request,
    user: CurrentUser,
    mailbox: Annotated[
        str, Query(max_length=255, description="A role (inbox, sent, ...), a mailbox id or name.")
    ] = "inbox",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """Messages of one mailbox, newest first.

    The cursor is a position (arrival time and id), not an offset, so mail arriving between
    two pages neither repeats nor hides a message on the next page. A page asked for again
    before any change of this user is served as rendered before (:mod:`gateway.page_cache`).
    """
    store: Storage = request.app.state.store  # not the Store dependency: one less to resolve
    key = (user.id, mailbox, limit, cursor)
    if (seq := change_seq_read(request)) is None:
        async with store.db.reader() as session:
            seq = await current_seq(session, user.id)
    if (body := _pages.get(key, seq)) is None:
        async with store.db.reader() as session:
            box = await find_mailbox(session, user.id, mailbox)
            page = await list_messages(session, user.id, box.id, limit=limit, cursor=cursor)
        body = _render(page)
        _pages.put(key, seq, body)
    return Response(body, media_type="application/json")


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


@router.post("/bulk", response_model=BulkResult, responses=_NOT_YOURS)
async def bulk(store: Store, user: CurrentUser, body: BulkRequest) -> BulkResult:
    """One action on many messages: all of them must be yours, or nothing changes (404)."""
    ids = list(dict.fromkeys(body.ids))
    result = BulkResult(action=body.action, ids=ids)
    async with transaction(store) as session:
        if body.action == "flags":
            if body.seen is None and body.flagged is None and body.answered is None:
                raise InvalidInput("give at least one of seen, flagged, answered", field="seen")
            await set_flags(
                session,
                user.id,
                body.ids,
                seen=body.seen,
                flagged=body.flagged,
                answered=body.answered,
            )
        elif body.action == "move":
            if body.mailbox is None:
                raise InvalidInput("name the target mailbox", field="mailbox")
            target = await find_mailbox(session, user.id, body.mailbox)
            await move_messages(session, user.id, body.ids, target)
        else:
            result.trashed, result.deleted = await delete_messages(session, user.id, body.ids)
    return result


@router.get(
    "/{message_id}",
    response_model=MessageDetail,
    response_model_by_alias=True,
    responses=_NOT_YOURS,
)
async def read_message(
    store: Store,
    user: CurrentUser,
    message_id: str,
    images: Annotated[bool, Query(description="Load remote images in the HTML body.")] = False,
) -> MessageDetail:
    """Headers, text, sanitised HTML and the attachment list of one message."""
    async with store.db.reader() as session:
        message = await get_message(session, user.id, message_id)
        content = await _content(store, session, message.blob_key)
    headers = content["headers"]
    assert isinstance(headers, dict)
    attachments = content["attachments"]
    assert isinstance(attachments, list)
    return MessageDetail(
        **message_item(message).model_dump(),
        bcc=message.bcc_addresses,
        message_id=headers.get("message_id"),
        in_reply_to=headers.get("in_reply_to"),
        references=headers.get("references") or [],
        text=str(content["text"]),
        html=sanitize_html(str(content["html"]), allow_remote_images=images),
        attachments=[AttachmentOut(**a) for a in attachments],
    )


@router.patch(
    "/{message_id}",
    response_model=MessageItem,
    response_model_by_alias=True,
    responses=_NOT_YOURS,
)
async def update_flags(
    store: Store, user: CurrentUser, message_id: str, body: FlagsUpdate
) -> MessageItem:
    """Set or clear seen, flagged, answered; flags left out stay as they are."""
    async with transaction(store) as session:
        (message,) = await set_flags(
            session,
            user.id,
            [message_id],
            seen=body.seen,
            flagged=body.flagged,
            answered=body.answered,
        )
    return message_item(message)


@router.post(
    "/{message_id}/move",
    response_model=MessageItem,
    response_model_by_alias=True,
    responses=_NOT_YOURS,
)
async def move(store: Store, user: CurrentUser, message_id: str, body: MoveRequest) -> MessageItem:
    """Move a message to another of your mailboxes."""
    async with transaction(store) as session:
        target = await find_mailbox(session, user.id, body.mailbox)
        (message,) = await move_messages(session, user.id, [message_id], target)
    return message_item(message)


@router.delete("/{message_id}", response_model=DeleteResult, responses=_NOT_YOURS)
async def delete(store: Store, user: CurrentUser, message_id: str) -> DeleteResult:
    """Move a message to Trash; a message already in Trash is deleted for good."""
    async with transaction(store) as session:
        trashed, _ = await delete_messages(session, user.id, [message_id])
    return DeleteResult(id=message_id, outcome="trashed" if trashed else "deleted")


@router.get(
    "/{message_id}/raw",
    response_class=Response,
    responses={
        200: {"content": {"message/rfc822": {}}, "description": "The exact bytes stored."},
        **_NOT_YOURS,
    },
)
async def raw_message(store: Store, user: CurrentUser, message_id: str) -> Response:
    """The message exactly as it was received (or sent), as a download."""
    async with store.db.reader() as session:
        message = await get_message(session, user.id, message_id)
    raw = await store.blobs.get(message.blob_key)
    return Response(
        raw,
        media_type="message/rfc822",
        headers=attachment_headers(f"{message.subject or message.id}.eml"),
    )
