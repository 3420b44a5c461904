"""Search on OpenSearch (``POSTROOM_SEARCH_URL=http(s)://host:9200``) through opensearch-py.

One document per message copy, routed by user id (a user's documents live on one shard and
every query is filtered to the user as well). Text fields hold the normalised tokens of
``search_documents`` and are analysed by ``whitespace``, so the three backends match the same
way. The index follows the database through the per-user change log: before each search,
:meth:`OpenSearchBackend.catch_up` re-reads the messages named by changes it has not applied
(new, flagged, moved, deleted) and bulk-writes or deletes their documents, remembering the
last applied sequence number in the ``-sync`` index. If the log no longer reaches back that
far, the user's documents are rebuilt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from opensearchpy import AsyncOpenSearch, NotFoundError
from opensearchpy.helpers import async_bulk
from sqlalchemy import select

from postroom.errors import ChangesExpired
from search.backend import Found, Progress, SearchRequest
from search.opensearch_dsl import TEXT_FIELDS, user_query
from search.sql_query import found
from storage.db.models import Message, MessageContent, SearchDocument, User
from storage.registry import Storage
from storage.repositories.changes import changes_since, current_seq

__all__ = ["INDEX_TEMPLATE", "OpenSearchBackend", "message_document"]

INDEX = "postroom-messages"
SYNC_INDEX = "postroom-search-sync"  # outside the template pattern: not a message index
BATCH = 500
_text = {"type": "text", "analyzer": "whitespace"}
INDEX_TEMPLATE: dict[str, Any] = {
    "index_patterns": [f"{INDEX}*"],
    "template": {
        "settings": {"number_of_shards": 1, "refresh_interval": "1s"},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "message_id": {"type": "keyword"},
                "user_id": {"type": "keyword"},
                "mailbox_id": {"type": "keyword"},
                "seen": {"type": "boolean"},
                "flagged": {"type": "boolean"},
                "has_attachments": {"type": "boolean"},
                "received_at": {"type": "date"},
                "size": {"type": "long"},
                **{name: _text for name in TEXT_FIELDS.values()},
            },
        },
    },
}


def message_document(message: Message, document: SearchDocument) -> dict[str, Any]:
    return {
        "message_id": message.id,
        "user_id": message.user_id,
        "mailbox_id": message.mailbox_id,
        "seen": message.seen,
        "flagged": message.flagged,
        "has_attachments": message.has_attachments,
        "received_at": message.received_at.isoformat(),
        "size": message.size,
        **{name: getattr(document, name) for name in TEXT_FIELDS.values()},
    }


class OpenSearchBackend:
    name = "opensearch"

    def __init__(self, url: str, store: Storage) -> None:
        self.client = AsyncOpenSearch(hosts=[url])
        self.store = store
        self._ready = False

    async def _ensure_index(self) -> None:
        if self._ready:
            return
        await self.client.indices.put_index_template(name=INDEX, body=INDEX_TEMPLATE)
        for name in (INDEX, SYNC_INDEX):
            if not await self.client.indices.exists(index=name):
                await self.client.indices.create(index=name)
        self._ready = True

    async def search(self, request: SearchRequest) -> list[Found]:
        await self._ensure_index()
        body = user_query(
            request.user_id,
            request.query,
            request.mailboxes,
            limit=request.limit,
            offset=request.offset,
        )
        answer = await self.client.search(index=INDEX, body=body, routing=request.user_id)
        ids = [str(hit["_id"]) for hit in answer["hits"]["hits"]]
        # Read back from the database, scoped again: the index only says which ones.
        statement = (
            select(Message, MessageContent.text_body, MessageContent.html_body)
            .join(MessageContent, MessageContent.blob_key == Message.blob_key)
            .where(Message.user_id == request.user_id, Message.id.in_(ids))
        )
        async with self.store.db.session() as session:
            rows = {item.message.id: item for item in await found(session, statement)}
        return [rows[i] for i in ids if i in rows]

    async def _synced(self, user_id: str) -> int:
        try:
            found = await self.client.get(index=SYNC_INDEX, id=user_id)
        except NotFoundError:
            return 0
        return int(found["_source"]["seq"])

    async def _mark_synced(self, user_id: str, seq: int) -> None:
        await self.client.index(index=SYNC_INDEX, id=user_id, body={"seq": seq}, refresh=True)

    async def catch_up(self, user_id: str) -> None:
        await self._ensure_index()
        synced = await self._synced(user_id)
        async with self.store.db.session() as session:
            latest = await current_seq(session, user_id)
            if synced >= latest:
                return
            try:
                changes = await changes_since(session, user_id, synced, limit=100_000)
            except ChangesExpired:
                changes = None
        if changes is None:
            await self.rebuild(user_id, lambda _done: None)
            return
        ids = {
            str(change.data["message"]["id"])
            for change in changes
            if isinstance(change.data.get("message"), dict) and "id" in change.data["message"]
        }
        await self._apply(user_id, ids)
        await self._mark_synced(user_id, latest)

    async def _apply(self, user_id: str, ids: set[str]) -> None:
        async with self.store.db.session() as session:
            rows = (
                await session.execute(
                    select(Message, SearchDocument)
                    .join(SearchDocument, SearchDocument.blob_key == Message.blob_key)
                    .where(Message.user_id == user_id, Message.id.in_(ids))
                )
            ).tuples()
            present = {message.id: (message, document) for message, document in rows}
        actions: list[dict[str, Any]] = [
            {
                "_op_type": "index",
                "_index": INDEX,
                "_id": i,
                "_routing": user_id,
                "_source": message_document(*present[i]),
            }
            for i in present
        ]
        actions += [
            {"_op_type": "delete", "_index": INDEX, "_id": i, "_routing": user_id}
            for i in ids - present.keys()
        ]
        if actions:
            await async_bulk(self.client, actions, refresh=True, raise_on_error=False)

    async def _pages(
        self, user_ids: Iterable[str]
    ) -> AsyncIterator[list[tuple[Message, SearchDocument]]]:
        for user_id in user_ids:
            after = ""
            while True:
                async with self.store.db.session() as session:
                    page = list(
                        (
                            await session.execute(
                                select(Message, SearchDocument)
                                .join(SearchDocument, SearchDocument.blob_key == Message.blob_key)
                                .where(Message.user_id == user_id, Message.id > after)
                                .order_by(Message.id)
                                .limit(BATCH)
                            )
                        ).tuples()
                    )
                if not page:
                    break
                yield page
                after = page[-1][0].id

    async def rebuild(self, user_id: str | None, progress: Progress) -> None:
        await self._ensure_index()
        async with self.store.db.session() as session:
            users = [user_id] if user_id else list(await session.scalars(select(User.id)))
            seqs = {u: await current_seq(session, u) for u in users}
        for one in users:
            await self.client.delete_by_query(
                index=INDEX, body={"query": {"term": {"user_id": one}}}, routing=one, refresh=True
            )
        async for page in self._pages(users):
            actions = [
                {
                    "_op_type": "index",
                    "_index": INDEX,
                    "_id": m.id,
                    "_routing": m.user_id,
                    "_source": message_document(m, d),
                }
                for m, d in page
            ]
            await async_bulk(self.client, actions, refresh=False)
            progress(len(page))
        await self.client.indices.refresh(index=INDEX)
        for one, seq in seqs.items():
            await self._mark_synced(one, seq)

    async def close(self) -> None:
        await self.client.close()
