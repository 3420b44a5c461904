"""Several tables' rows in one go: one statement on PostgreSQL, the values a Core insert would
store, defaults filled, duplicates ignored where asked and failing the whole call otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Table, event, select
from sqlalchemy.exc import IntegrityError

from storage.db.bulk_insert import TableRows, insert_all
from storage.db.models import Attachment, Blob, MessageContent, SearchDocument
from storage.registry import Storage

BLOBS = cast(Table, Blob.__table__)
CONTENTS = cast(Table, MessageContent.__table__)
ATTACHMENTS = cast(Table, Attachment.__table__)
WHEN = datetime(2030, 1, 31, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))


def _rows(key: str) -> list[TableRows]:
    """A blob, its content (bodies and defects left to their defaults) and an attachment
    that refers to both: children inserted with their parents in the same call."""
    return [
        TableRows(BLOBS, [{"key": key, "size": 10, "created_at": WHEN}], ignore_duplicates=True),
        TableRows(
            CONTENTS,
            [{"blob_key": key, "headers": {"message_id": "<a@b>", "references": ["<r@b>"]}}],
        ),
        TableRows(
            ATTACHMENTS,
            [
                {
                    "content_key": key,
                    "position": 0,
                    "blob_key": key,
                    "filename": 'résumé "quoted".pdf',
                    "content_type": "application/pdf",
                    "size": 10,
                }
            ],
        ),
    ]


def _statements(store: Storage) -> list[str]:
    seen: list[str] = []

    @event.listens_for(store.db.engine.sync_engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if "INSERT" in statement:
            seen.append(statement)

    return seen


async def test_the_rows_are_stored_as_a_core_insert_would_store_them(store: Storage) -> None:
    statements = _statements(store)
    async with store.db.session() as session, session.begin():
        await insert_all(await session.connection(), _rows("k1"))
    # PostgreSQL: one statement (one round trip) for the three tables; SQLite: one per table
    assert len(statements) == (1 if store.db.engine.dialect.name == "postgresql" else 3)
    async with store.db.reader() as session:
        blob = await session.get(Blob, "k1")
        content = await session.get(MessageContent, "k1")
        attachment = await session.scalar(select(Attachment))
    assert blob is not None and blob.size == 10
    assert blob.created_at == WHEN.astimezone(UTC)
    assert content is not None
    assert content.headers == {"message_id": "<a@b>", "references": ["<r@b>"]}
    assert (content.text_body, content.html_body, content.defects) == ("", "", [])
    assert attachment is not None
    assert attachment.filename == 'résumé "quoted".pdf'
    assert len(attachment.id) == 32  # the column's Python default, filled in
    assert attachment.content_id is None


async def test_a_duplicate_is_ignored_where_asked_and_fails_the_call_elsewhere(
    store: Storage,
) -> None:
    async with store.db.session() as session, session.begin():
        await insert_all(await session.connection(), _rows("k2"))
    with pytest.raises(IntegrityError):
        async with store.db.session() as session, session.begin():
            # the blob is ignored as a duplicate; the content is not, and fails it all
            await insert_all(
                await session.connection(),
                [
                    TableRows(BLOBS, [{"key": "k3", "size": 1, "created_at": WHEN}]),
                    *_rows("k2")[:2],
                ],
            )
    async with store.db.reader() as session:
        keys = (await session.scalars(select(Blob.key).order_by(Blob.key))).all()
    assert keys == ["k2"]


async def test_nothing_to_insert_sends_nothing(store: Storage) -> None:
    statements = _statements(store)
    async with store.db.session() as session, session.begin():
        await insert_all(await session.connection(), [TableRows(BLOBS, [])])
    assert statements == []


async def test_a_row_meeting_its_key_updates_it_and_the_last_of_one_call_wins(
    store: Storage,
) -> None:
    documents = cast(Table, SearchDocument.__table__)

    def document(body: str) -> dict[str, Any]:
        return {"blob_key": "k4", "version": 1, "indexed_at": WHEN, "body": body}

    async with store.db.session() as session, session.begin():
        await insert_all(
            await session.connection(),
            [
                *_rows("k4"),
                TableRows(documents, [document("first")], update_on_conflict=("blob_key",)),
            ],
        )
    async with store.db.session() as session, session.begin():
        await insert_all(
            await session.connection(),
            [
                TableRows(
                    documents,
                    [document("second"), document("third")],
                    update_on_conflict=("blob_key",),
                )
            ],
        )
    async with store.db.reader() as session:
        bodies = (await session.scalars(select(SearchDocument.body))).all()
    assert bodies == ["third"]
