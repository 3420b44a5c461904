"""Rebuilding the index from the database, and checking it against the database.

The database is the system of record: ``search_documents`` can always be recomputed from
``message_contents``, ``messages`` and ``attachments``. :func:`check` recomputes and compares
(text version and every field), so it finds rows missing, written by an older normaliser, or out of
step with their content; :func:`reindex` rewrites them in batches, then lets a backend that
keeps its own copy (OpenSearch) re-copy them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy import select

from postroom.errors import NotFound
from search.backend import Progress, SearchBackend
from search.documents import FIELDS, TEXT_VERSION, DocumentText, stored_documents, write_document
from storage.db.models import Message, SearchDocument, User
from storage.registry import Storage

__all__ = ["IndexReport", "check", "content_keys", "reindex", "user_id_of"]

BATCH = 500


@dataclass
class IndexReport:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    """Ids of messages whose content has no index row."""
    stale: list[str] = field(default_factory=list)
    """Content keys whose index row differs from what their content gives now."""


async def user_id_of(store: Storage, address: str | None) -> str | None:
    if address is None:
        return None
    async with store.db.session() as session:
        user_id = await session.scalar(select(User.id).where(User.address == address.lower()))
    if user_id is None:
        raise NotFound(f"no user {address}; see `postroom user list`")
    return user_id


async def content_keys(store: Storage, user_id: str | None) -> list[str]:
    """Every content some message (of ``user_id``) refers to, in a stable order."""
    query = select(Message.blob_key).distinct().order_by(Message.blob_key)
    if user_id is not None:
        query = query.where(Message.user_id == user_id)
    async with store.db.session() as session:
        return list(await session.scalars(query))


async def _batches(keys: list[str]) -> AsyncIterator[list[str]]:
    for start in range(0, len(keys), BATCH):
        yield keys[start : start + BATCH]


async def reindex(
    store: Storage,
    backend: SearchBackend,
    user_id: str | None,
    progress: Progress,
    engine_progress: Progress,
) -> int:
    """Rewrite the index rows of every content (of ``user_id``); how many were written."""
    keys = await content_keys(store, user_id)
    written = 0
    async for batch in _batches(keys):
        async with store.db.session() as session, session.begin():
            for key, document in (await stored_documents(session, batch)).items():
                await write_document(session, key, document)
                written += 1
        progress(len(batch))
    await backend.rebuild(user_id, engine_progress)
    return written


async def check(store: Storage, user_id: str | None, progress: Progress) -> IndexReport:
    keys = await content_keys(store, user_id)
    report = IndexReport()
    async for batch in _batches(keys):
        async with store.db.session() as session:
            rows = {
                row.blob_key: row
                for row in await session.scalars(
                    select(SearchDocument).where(SearchDocument.blob_key.in_(batch))
                )
            }
            current = await stored_documents(session, batch)
            absent = [key for key in batch if key not in rows]
            if absent:
                query = select(Message.id).where(Message.blob_key.in_(absent))
                if user_id is not None:
                    query = query.where(Message.user_id == user_id)
                report.missing += list(await session.scalars(query.order_by(Message.id)))
        for key, row in rows.items():
            document = current.get(key)
            stored = DocumentText(**{name: getattr(row, name) for name in FIELDS})
            if row.version != TEXT_VERSION or (document is not None and document != stored):
                report.stale.append(key)
        report.checked += len(batch)
        progress(len(batch))
    return report
