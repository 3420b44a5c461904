"""Writing ``search_documents``: the normalised text of one message content.

This is the one write path of the index, whichever backend answers queries: the SQL engines
derive their full-text index from these rows inside the same transaction (FTS5 triggers, a
generated tsvector column), and the OpenSearch backend ships them to its index. Writing happens
in the transaction that stores the content (the processor and the send path call
:func:`index_parsed`), so a message is searchable exactly when it exists.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any, cast

import nh3
from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.message import ParsedMessage
from search.text import index_text
from storage.db.bulk_insert import TableRows, insert_all
from storage.db.models import Attachment, Message, MessageContent, SearchDocument
from storage.db.types import utcnow
from storage.repositories.outbound import RecordedSend

__all__ = [
    "COLUMN_OF",
    "FIELDS",
    "TEXT_VERSION",
    "DocumentText",
    "body_text",
    "from_parsed",
    "index_parsed",
    "index_stored",
    "send_document",
    "stored_documents",
    "with_index",
    "write_document",
]

TEXT_VERSION = 1
"""Bumped whenever ``search.text`` changes what it produces: older rows then count as stale."""
MAX_BODY_CHARS = 200_000
"""Enough for any letter; bounds the index (PostgreSQL refuses tsvectors over 1 MB)."""


@dataclass(frozen=True)
class DocumentText:
    subject: str
    sender: str
    recipients_to: str
    recipients_cc: str
    body: str
    filenames: str


FIELDS = tuple(f.name for f in fields(DocumentText))
COLUMN_OF = {
    "subject": "subject",
    "from": "sender",
    "to": "recipients_to",
    "cc": "recipients_cc",
    "body": "body",
    "filename": "filenames",
}
"""The document column each field of the query language (``from:``) searches, in every engine."""


def body_text(text: str, markup: str) -> str:
    if text.strip():
        return text
    return html.unescape(nh3.clean(markup, tags=set())) if markup else ""


def _document(
    subject: str,
    sender: list[str],
    to: list[str],
    cc: list[str],
    body: str,
    filenames: list[str],
) -> DocumentText:
    return DocumentText(
        subject=index_text(subject),
        sender=index_text(" ".join(sender)),
        recipients_to=index_text(" ".join(to)),
        recipients_cc=index_text(" ".join(cc)),
        body=index_text(body[:MAX_BODY_CHARS]),
        filenames=index_text(" ".join(filenames)),
    )


def from_parsed(parsed: ParsedMessage) -> DocumentText:
    return _document(
        parsed.subject,
        [parsed.from_name, parsed.from_address],
        parsed.to,
        parsed.cc,
        body_text(parsed.text, parsed.html),
        [attachment.filename for attachment in parsed.attachments],
    )


async def stored_documents(session: AsyncSession, keys: list[str]) -> dict[str, DocumentText]:
    """The documents of ``keys`` as the database holds them now (three queries per batch).

    Contents no message refers to any more are left out: nothing could find them.
    """
    contents = {
        key: (text, markup)
        for key, text, markup in await session.execute(
            select(
                MessageContent.blob_key, MessageContent.text_body, MessageContent.html_body
            ).where(MessageContent.blob_key.in_(keys))
        )
    }
    first_copy = (
        select(func.min(Message.id)).where(Message.blob_key.in_(keys)).group_by(Message.blob_key)
    )
    copies = {
        m.blob_key: m
        for m in await session.scalars(select(Message).where(Message.id.in_(first_copy)))
    }
    filenames: dict[str, list[str]] = defaultdict(list)
    for key, name in await session.execute(
        select(Attachment.content_key, Attachment.filename)
        .where(Attachment.content_key.in_(keys))
        .order_by(Attachment.content_key, Attachment.position)
    ):
        filenames[key].append(name)
    documents: dict[str, DocumentText] = {}
    for key, copy in copies.items():
        if key not in contents:
            continue
        text, markup = contents[key]
        documents[key] = _document(
            copy.subject,
            [copy.from_name, copy.from_address],
            copy.to_addresses,
            copy.cc_addresses,
            body_text(text, markup),
            filenames[key],
        )
    return documents


_DOCUMENTS = cast(Table, SearchDocument.__table__)


async def write_document(session: AsyncSession, blob_key: str, document: DocumentText) -> None:
    await insert_all(await session.connection(), [_rows(blob_key, document)])


async def index_parsed(session: AsyncSession, blob_key: str, parsed: ParsedMessage) -> None:
    """Index freshly stored content, in the caller's transaction (after ``store_content``)."""
    await write_document(session, blob_key, from_parsed(parsed))


async def index_stored(session: AsyncSession, blob_key: str) -> None:
    """Index content already stored in this transaction (or long ago: ``search reindex``)."""
    for key, document in (await stored_documents(session, [blob_key])).items():
        await write_document(session, key, document)


def send_document(blob_key: str, parsed: ParsedMessage) -> TableRows:
    """The search document of a send's Sent copy: what :func:`storage.outbox.submit` takes as
    ``index`` (storage may not import search, so it is passed in).

    Built with the send, before it joins its batch: Python time inside the batch's transaction
    holds up every send of the batch. The batch writes it with its other rows, in the same
    transaction, so the Sent copy is searchable exactly when it exists. It comes from what the
    copy is filed from: reading the rows back would say the same at three queries a send.
    """
    return _rows(blob_key, from_parsed(parsed))


def _rows(blob_key: str, document: DocumentText) -> TableRows:
    """A document's row, replacing the one its content had (an upsert on ``blob_key``)."""
    row: dict[str, Any] = {"blob_key": blob_key, "version": TEXT_VERSION, "indexed_at": utcnow()}
    for name in FIELDS:
        row[name] = getattr(document, name)
    return TableRows(_DOCUMENTS, [row], update_on_conflict=("blob_key",))


RecordHook = Callable[[AsyncSession, RecordedSend], Awaitable[None]]


def with_index(hook: RecordHook | None) -> RecordHook:
    """An ``on_record`` hook for :func:`storage.outbox.submit` that also indexes the Sent copy.

    Storage may not import search, so the send path passes this in; it runs inside the
    transaction that records the send, so the Sent copy is searchable exactly when it exists.
    The document comes from what the copy was filed from (``recorded.parsed``): reading the
    rows just written back would cost three queries and say the same.
    """

    async def record(session: AsyncSession, recorded: RecordedSend) -> None:
        if recorded.parsed is None:
            await index_stored(session, recorded.outbound.blob_key)
        else:
            await index_parsed(session, recorded.outbound.blob_key, recorded.parsed)
        if hook is not None:
            await hook(session, recorded)

    return record
