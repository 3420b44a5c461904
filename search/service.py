"""A search as the API runs it: parse, resolve ``in:``, ask the backend, describe the hits.

The backend returns the page's rows and bodies; every backend scopes its statement to the
user (the SQL ones in the one statement builder, OpenSearch by filter and again when it reads
the rows back). Pages are cut by offset: relevance scores
are not stable keys, and a cursor carries the query's digest so it cannot be replayed
against another query.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import select

from postroom.errors import InvalidInput
from search.backend import SearchBackend, SearchRequest
from search.query import InMailbox, Node, Not, Term, parse
from search.snippets import highlight
from storage.db.models import Mailbox, Message
from storage.registry import Storage

__all__ = ["Hit", "SearchPage", "search_messages"]

MAX_OFFSET = 10_000


@dataclass
class Hit:
    message: Message
    highlight: str
    subject_highlight: str


@dataclass
class SearchPage:
    items: list[Hit]
    next_cursor: str | None


def _digest(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:12]


def _encode_cursor(query: str, offset: int) -> str:
    raw = json.dumps([offset, _digest(query)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(query: str, cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset, digest = json.loads(base64.urlsafe_b64decode(padded))
        offset = int(offset)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "this cursor is malformed; use next_cursor as given", field="cursor"
        ) from exc
    if digest != _digest(query) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(
            "this cursor belongs to another query; start again without a cursor", field="cursor"
        )
    return offset


def _walk(node: Node, negated: bool = False) -> list[tuple[Node, bool]]:
    found: list[tuple[Node, bool]] = [(node, negated)]
    if isinstance(node, Not):
        found += _walk(node.child, not negated)
    elif hasattr(node, "children"):
        for child in node.children:
            found += _walk(child, negated)
    return found


async def _mailboxes(store: Storage, user_id: str, node: Node) -> dict[str, str]:
    wanted = [n for n, _ in _walk(node) if isinstance(n, InMailbox)]
    if not wanted:
        return {}
    async with store.db.session() as session:
        boxes = (await session.scalars(select(Mailbox).where(Mailbox.user_id == user_id))).all()
    resolved: dict[str, str] = {}
    for item in wanted:
        name = item.name.lower()
        box = next(
            (b for b in boxes if name in ((b.role or "").lower(), b.name.lower(), b.id.lower())),
            None,
        )
        if box is None:
            raise InvalidInput(
                f"there is no mailbox {item.name!r} (column {item.column}); "
                "see GET /api/v1/mailboxes",
                field="q",
            )
        resolved[name] = box.id
    return resolved


async def search_messages(
    store: Storage,
    backend: SearchBackend,
    user_id: str,
    query: str,
    *,
    limit: int,
    cursor: str | None = None,
) -> SearchPage:
    tree = parse(query)
    offset = _decode_cursor(query, cursor) if cursor else 0
    mailboxes = await _mailboxes(store, user_id, tree)
    await backend.catch_up(user_id)
    found = await backend.search(SearchRequest(user_id, tree, limit + 1, offset, mailboxes))
    words = [n.text for n, negated in _walk(tree) if isinstance(n, Term) and not negated]
    hits = [
        Hit(
            message=item.message,
            highlight=highlight(item.body or item.message.snippet, words),
            subject_highlight=highlight(item.message.subject, words, width=998),
        )
        for item in found[:limit]
    ]
    more = len(found) > limit and offset + limit <= MAX_OFFSET
    return SearchPage(hits, _encode_cursor(query, offset + limit) if more else None)
