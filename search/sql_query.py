"""Turning a query tree into one SQL statement over ``messages`` and ``search_documents``.

Flags, mailbox, dates and sizes are plain conditions on ``messages``; text is whatever the
engine understands (:class:`TextEngine`). The text parts of the top-level AND become one
engine expression that selects and ranks; text nested under OR or NOT with other kinds of
terms becomes a membership condition on the document row. The user scope is added here, to
every statement, so no engine can forget it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Select, and_, case, false, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from search.backend import Found, Progress, SearchRequest
from search.documents import body_text
from search.query import And, DateBound, Flag, InMailbox, Node, Not, Or, SizeBound, Term
from storage.db.database import Database
from storage.db.models import Message, MessageContent, SearchDocument

__all__ = [
    "RANKED_WINDOW",
    "Candidates",
    "PageSelect",
    "SqlSearch",
    "TextEngine",
    "build_statement",
    "found",
    "metadata_condition",
]


PageSelect = Select[Message, str, str]
"""A page of messages with their text and HTML bodies."""
Candidates = Select[str, datetime]
"""Ids and arrival times of a user's messages that pass the query's filters."""

RANKED_WINDOW = 500
"""How many of the newest matches are ranked by relevance; older matches follow, newest first.

Ranking every match of a common word means scoring most of a user's mail on every keystroke
(seconds at 100 000 messages); like Gmail, search ranks the recent matches and leaves older
ones in date order. Below this many matches the ranking is exact.
"""


class TextEngine(Protocol):
    """What differs between FTS5 and tsvector; expressions are engine query strings."""

    def leaf(self, term: Term) -> str | None:
        """The term as an engine expression, or None if it needs :meth:`term_condition`."""
        ...

    def conjunction(self, positives: list[str], negatives: list[str]) -> str | None: ...

    def disjunction(self, parts: list[str]) -> str: ...

    def negation(self, part: str) -> str | None: ...

    def contains(self, expression: str) -> ColumnElement[bool]:
        """The document row matches ``expression``."""
        ...

    def term_condition(self, term: Term) -> ColumnElement[bool]:
        """A term :meth:`leaf` could not express, as a condition on the document row."""
        ...

    async def settle_plan(self, session: AsyncSession) -> None:
        """Whatever the database needs so the search statement gets a plan for its values."""
        ...

    def window(self, candidates: Candidates, expression: str) -> Candidates:
        """``candidates`` restricted to ``expression``, walked newest first.

        Adds the columns ``walk`` (the order of the walk, newest first) and whatever
        :meth:`score` reads, and orders by ``walk`` descending; the caller cuts the walk off.
        """
        ...

    def score(self, window: Any, expression: str) -> ColumnElement[Any]:
        """How well a row of ``window`` matches ``expression``; lower is better."""
        ...


def _text(engine: TextEngine, node: Node) -> str | None:
    """``node`` as one engine expression, if it is text only and the engine can say it."""
    if isinstance(node, Term):
        return engine.leaf(node)
    if isinstance(node, Or):
        parts = [_text(engine, child) for child in node.children]
        return None if any(p is None for p in parts) else engine.disjunction(parts)  # type: ignore[arg-type]
    if isinstance(node, Not):
        inner = _text(engine, node.child)
        return None if inner is None else engine.negation(inner)
    if isinstance(node, And):
        positives: list[str] = []
        negatives: list[str] = []
        for child in node.children:
            if isinstance(child, Not):
                inner = _text(engine, child.child)
                if inner is None:
                    return None
                negatives.append(inner)
            elif (part := _text(engine, child)) is not None:
                positives.append(part)
            else:
                return None
        return engine.conjunction(positives, negatives)
    return None


def metadata_condition(node: Node, mailboxes: Mapping[str, str]) -> ColumnElement[bool]:
    if isinstance(node, Flag):
        return {
            "unread": Message.seen.is_(False),
            "read": Message.seen.is_(True),
            "flagged": Message.flagged.is_(True),
            "attachment": Message.has_attachments.is_(True),
        }[node.name]
    if isinstance(node, InMailbox):
        mailbox_id = mailboxes.get(node.name.lower())
        return Message.mailbox_id == mailbox_id if mailbox_id is not None else false()
    if isinstance(node, DateBound):
        if node.op == "before":
            return Message.received_at < node.when
        return Message.received_at >= node.when
    if isinstance(node, SizeBound):
        return Message.size > node.size if node.op == "larger" else Message.size < node.size
    raise TypeError(f"not a metadata term: {node!r}")


def _condition(engine: TextEngine, node: Node, mailboxes: Mapping[str, str]) -> Any:
    if (expression := _text(engine, node)) is not None:
        return engine.contains(expression)
    if isinstance(node, Term):
        return engine.term_condition(node)
    if isinstance(node, And):
        return and_(*(_condition(engine, child, mailboxes) for child in node.children))
    if isinstance(node, Or):
        return or_(*(_condition(engine, child, mailboxes) for child in node.children))
    if isinstance(node, Not):
        return not_(_condition(engine, node.child, mailboxes))
    return metadata_condition(node, mailboxes)


def _has_text(node: Node) -> bool:
    if isinstance(node, Term):
        return True
    if isinstance(node, Not):
        return _has_text(node.child)
    if isinstance(node, And | Or):
        return any(_has_text(child) for child in node.children)
    return False


def _is_text(node: Node) -> bool:
    if isinstance(node, Term):
        return True
    if isinstance(node, Not):
        return _is_text(node.child)
    if isinstance(node, And | Or):
        return all(_is_text(child) for child in node.children)
    return False


def build_statement(engine: TextEngine, request: SearchRequest) -> PageSelect:
    conjuncts = list(request.query.children) if isinstance(request.query, And) else [request.query]
    # The text conjuncts the engine can say select and rank; the rest become conditions.
    texts = [
        c
        for c in conjuncts
        if _is_text(c) and _text(engine, c.child if isinstance(c, Not) else c) is not None
    ]
    primary = _text(engine, And(tuple(texts))) if texts else None
    rest = [c for c in conjuncts if primary is None or c not in texts]
    if primary is not None:
        return _ranked_page(engine, request, primary, rest)

    statement = (
        select(Message, MessageContent.text_body, MessageContent.html_body)
        .join(MessageContent, MessageContent.blob_key == Message.blob_key)
        .where(Message.user_id == request.user_id)
    )
    if any(_has_text(c) for c in conjuncts):  # flags and dates alone need no index row
        statement = statement.join(
            SearchDocument, SearchDocument.blob_key == Message.blob_key, isouter=True
        )
    for conjunct in rest:
        statement = statement.where(_condition(engine, conjunct, request.mailboxes))
    statement = statement.order_by(Message.received_at.desc(), Message.id.desc())
    return statement.limit(request.limit).offset(request.offset)


def _ranked_page(
    engine: TextEngine, request: SearchRequest, primary: str, rest: list[Node]
) -> PageSelect:
    """One statement in three steps, so that only a bounded set of rows is ever scored.

    1. The engine walks the user's matches newest first, as far as the ranked window (or the
       page, if it lies beyond it) reaches.
    2. The walk is numbered; the first :data:`RANKED_WINDOW` rows are ordered by score, the
       rest keep the walk's order; ties go to the newest.
    3. Only the page's rows are joined to their messages and bodies (for the snippets).
    """
    candidates = (
        select(Message.id.label("id"), Message.received_at.label("received_at"))
        .join(SearchDocument, SearchDocument.blob_key == Message.blob_key)
        .where(Message.user_id == request.user_id)
    )
    for conjunct in rest:
        candidates = candidates.where(_condition(engine, conjunct, request.mailboxes))
    reach = max(RANKED_WINDOW, request.offset + request.limit)
    walk = engine.window(candidates, primary).limit(reach).cte("search_walk")
    position = func.row_number().over(order_by=(walk.c.walk.desc(), walk.c.id.desc()))
    numbered = select(walk, position.label("position")).subquery("search_numbered")
    beyond = numbered.c.position > RANKED_WINDOW
    key = case((beyond, numbered.c.position), else_=engine.score(numbered, primary))
    page = (
        select(
            numbered.c.id,
            numbered.c.received_at,
            beyond.label("beyond"),
            key.label("rank_key"),
        )
        .order_by(beyond, key, numbered.c.received_at.desc(), numbered.c.id.desc())
        .limit(request.limit)
        .offset(request.offset)
        .subquery("search_page")
    )
    return (
        select(Message, MessageContent.text_body, MessageContent.html_body)
        .join(page, page.c.id == Message.id)
        .join(MessageContent, MessageContent.blob_key == Message.blob_key)
        .order_by(page.c.beyond, page.c.rank_key, page.c.received_at.desc(), page.c.id.desc())
    )


async def found(session: AsyncSession, statement: PageSelect) -> list[Found]:
    rows = await session.execute(statement)
    return [Found(message, body_text(text, markup)) for message, text, markup in rows]


class SqlSearch:
    """Search in the metadata database itself, through one :class:`TextEngine`.

    The engine's index follows ``search_documents`` on its own (FTS5 triggers, a generated
    tsvector column), so there is nothing to catch up or rebuild beyond that table.
    """

    def __init__(self, db: Database, engine: TextEngine, name: str) -> None:
        self.db = db
        self.engine = engine
        self.name = name

    async def search(self, request: SearchRequest) -> list[Found]:
        statement = build_statement(self.engine, request)
        async with self.db.session() as session:
            await self.engine.settle_plan(session)
            return await found(session, statement)

    async def catch_up(self, user_id: str) -> None:
        """Nothing to do: the engine's index follows ``search_documents``."""

    async def rebuild(self, user_id: str | None, progress: Progress) -> None:
        """Nothing beyond ``search_documents``: the engine's index followed it."""

    async def close(self) -> None:
        pass
