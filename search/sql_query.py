"""Turning a query tree into one SQL statement over ``messages`` and ``search_documents``.

Flags, mailbox, dates and sizes are plain conditions on ``messages``; text is whatever the
engine understands (:class:`TextEngine`). The text parts of the top-level AND become one
engine expression that selects and ranks; text nested under OR or NOT with other kinds of
terms becomes a membership condition on the document row. The user scope is added here, to
every statement, so no engine can forget it.

Building the SQLAlchemy statement for the ranked page cost more CPU than the database took to
answer a selective query (about 1.5 ms of Python per search). So a search is first *planned*:
a cheap walk of the tree that records every value (user, engine expressions, mailbox ids,
dates, sizes, page bounds) in slots and returns a hashable shape. The statement is built
once per shape, with named parameters ``s0, s1, ...`` in place of the values, and reused;
each search only passes its values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache, partial
from typing import Any, Protocol

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    false,
    func,
    not_,
    or_,
    select,
)
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
    "Plan",
    "SqlSearch",
    "TextEngine",
    "build_statement",
    "found",
    "plan_search",
]


PageSelect = Select[Message, str, str]
"""A page of messages with their text and HTML bodies."""
Candidates = Select[str, datetime]
"""Ids and arrival times of a user's messages that pass the query's filters."""
Shape = tuple[Any, ...]
"""A statement's structure with every value replaced by its slot number; hashable."""

RANKED_WINDOW = 500
"""How many of the newest matches are ranked by relevance; older matches follow, newest first.

Ranking every match of a common word means scoring most of a user's mail on every keystroke
(seconds at 100 000 messages); like Gmail, search ranks the recent matches and leaves older
ones in date order. Below this many matches the ranking is exact.
"""
STATEMENT_CACHE = 512
"""Distinct query shapes kept built; real searches use a few dozen."""


class TextEngine(Protocol):
    """What differs between FTS5 and tsvector; expressions are engine query strings.

    Methods that build SQL receive parameters (``BindParameter``) standing for the values,
    never the values themselves, so that one built statement serves every search of a shape.
    """

    def leaf(self, term: Term) -> str | None:
        """The term as an engine expression, or None if it needs :meth:`term_condition`."""
        ...

    def conjunction(self, positives: list[str], negatives: list[str]) -> str | None: ...

    def disjunction(self, parts: list[str]) -> str: ...

    def negation(self, part: str) -> str | None: ...

    def variant(self, node: Node) -> str:
        """Which form of the index serves ``node`` as the ranking expression (part of the shape).

        PostgreSQL answers a query that only names header fields from a small tsvector of
        those fields; SQLite has one form.
        """
        ...

    def reads_document(self, variant: str) -> bool:
        """Whether :meth:`window` of ``variant`` reads the ``search_documents`` row."""
        ...

    def window_values(self, node: Node, variant: str) -> tuple[str, ...]:
        """Further values :meth:`window` of ``variant`` reads for ``node``, in order.

        PostgreSQL's "pairs" form narrows a phrase by its word pairs, a second engine query.
        """
        ...

    def contains(self, expression: BindParameter[str]) -> ColumnElement[bool]:
        """The document row matches the expression in ``expression``."""
        ...

    def term_values(self, term: Term) -> tuple[str, ...]:
        """The values :meth:`term_condition` needs for ``term``, in order."""
        ...

    def term_condition(
        self, field: str | None, values: Sequence[BindParameter[str]]
    ) -> ColumnElement[bool]:
        """A term :meth:`leaf` could not express, as a condition on the document row."""
        ...

    async def settle_plan(self, session: AsyncSession) -> None:
        """Whatever the database needs so the search statement gets a plan for its values."""
        ...

    def window(
        self,
        candidates: Candidates,
        expression: BindParameter[str],
        variant: str,
        values: Sequence[BindParameter[str]],
    ) -> Candidates:
        """``candidates`` restricted to ``expression``, walked newest first.

        Adds the columns ``walk`` (the order of the walk, newest first) and whatever
        :meth:`score` reads, and orders by ``walk`` descending; the caller cuts the walk off.
        """
        ...

    def score(self, window: Any, expression: BindParameter[str]) -> ColumnElement[Any]:
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


class Plan:
    """The values of one search in slot order, and the shape that names their slots."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def slot(self, value: Any) -> int:
        self.values.append(value)
        return len(self.values) - 1

    @property
    def parameters(self) -> dict[str, Any]:
        return {f"s{index}": value for index, value in enumerate(self.values)}


def _condition_shape(engine: TextEngine, node: Node, plan: Plan, boxes: Mapping[str, str]) -> Shape:
    if (expression := _text(engine, node)) is not None:
        return ("text", plan.slot(expression))
    if isinstance(node, Term):
        return ("term", node.field, tuple(plan.slot(v) for v in engine.term_values(node)))
    if isinstance(node, And | Or):
        kind = "and" if isinstance(node, And) else "or"
        return (kind, tuple(_condition_shape(engine, c, plan, boxes) for c in node.children))
    if isinstance(node, Not):
        return ("not", _condition_shape(engine, node.child, plan, boxes))
    if isinstance(node, Flag):
        return ("flag", node.name)
    if isinstance(node, InMailbox):
        mailbox_id = boxes.get(node.name.lower())
        return ("box", plan.slot(mailbox_id)) if mailbox_id is not None else ("nobox",)
    if isinstance(node, DateBound):
        return ("date", node.op, plan.slot(node.when))
    if isinstance(node, SizeBound):
        return ("size", node.op, plan.slot(node.size))
    raise TypeError(f"not a query node: {node!r}")


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


def plan_search(engine: TextEngine, request: SearchRequest) -> tuple[Shape, Plan]:
    """The statement's shape and the search's values; cheap, no SQLAlchemy objects."""
    plan = Plan()
    user = plan.slot(request.user_id)
    query = request.query
    conjuncts = list(query.children) if isinstance(query, And) else [query]
    # The text conjuncts the engine can say select and rank; the rest become conditions.
    texts = [
        c
        for c in conjuncts
        if _is_text(c) and _text(engine, c.child if isinstance(c, Not) else c) is not None
    ]
    ranked = And(tuple(texts))
    primary = _text(engine, ranked) if texts else None
    rest = [c for c in conjuncts if primary is None or c not in texts]
    if primary is not None:
        expression = plan.slot(primary)
        variant = engine.variant(ranked)
        extra = tuple(plan.slot(v) for v in engine.window_values(ranked, variant))
        conditions = tuple(_condition_shape(engine, c, plan, request.mailboxes) for c in rest)
        reach = plan.slot(max(RANKED_WINDOW, request.offset + request.limit))
        page = (plan.slot(request.limit), plan.slot(request.offset))
        return ("ranked", user, expression, (variant, extra), conditions, reach, page), plan
    join = any(_has_text(c) for c in conjuncts)  # flags and dates alone need no index row
    conditions = tuple(_condition_shape(engine, c, plan, request.mailboxes) for c in rest)
    page = (plan.slot(request.limit), plan.slot(request.offset))
    return ("dated", user, join, conditions, page), plan


def _param(slot: int) -> BindParameter[Any]:
    """A value compared with a column: the column gives it its type."""
    return bindparam(f"s{slot}")


def _text_param(slot: int) -> BindParameter[str]:
    return bindparam(f"s{slot}", type_=String)


def _int_param(slot: int) -> BindParameter[int]:
    return bindparam(f"s{slot}", type_=Integer)


def _reads_text(shape: Shape) -> bool:
    """Whether the condition reads the document row (an engine match or a text column)."""
    kind = shape[0]
    if kind in ("text", "term"):
        return True
    if kind in ("and", "or"):
        return any(_reads_text(child) for child in shape[1])
    if kind == "not":
        return _reads_text(shape[1])
    return False


def _condition(engine: TextEngine, shape: Shape) -> ColumnElement[bool]:
    kind = shape[0]
    if kind == "text":
        return engine.contains(_text_param(shape[1]))
    if kind == "term":
        return engine.term_condition(shape[1], [_text_param(s) for s in shape[2]])
    if kind == "and":
        return and_(*(_condition(engine, child) for child in shape[1]))
    if kind == "or":
        return or_(*(_condition(engine, child) for child in shape[1]))
    if kind == "not":
        return not_(_condition(engine, shape[1]))
    if kind == "flag":
        return {
            "unread": Message.seen.is_(False),
            "read": Message.seen.is_(True),
            "flagged": Message.flagged.is_(True),
            "attachment": Message.has_attachments.is_(True),
        }[shape[1]]
    if kind == "box":
        return Message.mailbox_id == _param(shape[1])
    if kind == "nobox":
        return false()
    if kind == "date":
        if shape[1] == "before":
            return Message.received_at < _param(shape[2])
        return Message.received_at >= _param(shape[2])
    if kind == "size":
        size = _param(shape[2])
        return Message.size > size if shape[1] == "larger" else Message.size < size
    raise TypeError(f"not a condition shape: {shape!r}")


def _statement(engine: TextEngine, shape: Shape, window_size: int) -> PageSelect:
    """The statement for ``shape``; ``window_size`` is :data:`RANKED_WINDOW`."""
    if shape[0] == "ranked":
        _, user, expression, (variant, extra), conditions, reach, page = shape
        return _ranked_page(
            engine,
            user,
            _text_param(expression),
            (variant, [_text_param(s) for s in extra]),
            conditions,
            reach,
            page,
            window_size,
        )
    _, user, join, conditions, (limit, offset) = shape
    statement = (
        select(Message, MessageContent.text_body, MessageContent.html_body)
        .join(MessageContent, MessageContent.blob_key == Message.blob_key)
        .where(Message.user_id == _param(user))
    )
    if join:
        statement = statement.join(
            SearchDocument, SearchDocument.blob_key == Message.blob_key, isouter=True
        )
    for condition in conditions:
        statement = statement.where(_condition(engine, condition))
    statement = statement.order_by(Message.received_at.desc(), Message.id.desc())
    return statement.limit(_int_param(limit)).offset(_int_param(offset))


def build_statement(engine: TextEngine, request: SearchRequest) -> tuple[PageSelect, Plan]:
    """The statement for ``request`` and its values, built afresh (:class:`SqlSearch` caches)."""
    shape, plan = plan_search(engine, request)
    return _statement(engine, shape, RANKED_WINDOW), plan


def _ranked_page(
    engine: TextEngine,
    user: int,
    expression: BindParameter[str],
    form: tuple[str, Sequence[BindParameter[str]]],
    conditions: tuple[Shape, ...],
    reach: int,
    page: tuple[int, int],
    window_size: int,
) -> PageSelect:
    """One statement in three steps, so that only a bounded set of rows is ever scored.

    1. The engine walks the user's matches newest first, as far as the ranked window (or the
       page, if it lies beyond it) reaches.
    2. The walk is numbered; the first :data:`RANKED_WINDOW` rows are ordered by score, the
       rest keep the walk's order; ties go to the newest.
    3. Only the page's rows are joined to their messages and bodies (for the snippets).
    """
    variant, values = form
    candidates = select(Message.id.label("id"), Message.received_at.label("received_at"))
    if engine.reads_document(variant) or any(_reads_text(c) for c in conditions):
        candidates = candidates.join(SearchDocument, SearchDocument.blob_key == Message.blob_key)
    candidates = candidates.where(Message.user_id == _param(user))
    for condition in conditions:
        candidates = candidates.where(_condition(engine, condition))
    walk = (
        engine.window(candidates, expression, variant, values)
        .limit(_int_param(reach))
        .cte("search_walk")
    )
    position = func.row_number().over(order_by=(walk.c.walk.desc(), walk.c.id.desc()))
    numbered = select(walk, position.label("position")).subquery("search_numbered")
    beyond = numbered.c.position > window_size
    key = case((beyond, numbered.c.position), else_=engine.score(numbered, expression))
    limit, offset = page
    paged = (
        select(
            numbered.c.id,
            numbered.c.received_at,
            beyond.label("beyond"),
            key.label("rank_key"),
        )
        .order_by(beyond, key, numbered.c.received_at.desc(), numbered.c.id.desc())
        .limit(_int_param(limit))
        .offset(_int_param(offset))
        .subquery("search_page")
    )
    return (
        select(Message, MessageContent.text_body, MessageContent.html_body)
        .join(paged, paged.c.id == Message.id)
        .join(MessageContent, MessageContent.blob_key == Message.blob_key)
        .order_by(paged.c.beyond, paged.c.rank_key, paged.c.received_at.desc(), paged.c.id.desc())
    )


async def found(
    session: AsyncSession, statement: PageSelect, parameters: Mapping[str, Any] | None = None
) -> list[Found]:
    rows = await session.execute(statement, dict(parameters) if parameters else None)
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
        self._statement = lru_cache(maxsize=STATEMENT_CACHE)(partial(_statement, engine))

    async def search(self, request: SearchRequest) -> list[Found]:
        shape, plan = plan_search(self.engine, request)
        statement = self._statement(shape, RANKED_WINDOW)
        async with self.db.session() as session:
            await self.engine.settle_plan(session)
            return await found(session, statement, plan.parameters)

    async def catch_up(self, user_id: str) -> None:
        """Nothing to do: the engine's index follows ``search_documents``."""

    async def rebuild(self, user_id: str | None, progress: Progress) -> None:
        """Nothing beyond ``search_documents``: the engine's index followed it."""

    async def close(self) -> None:
        pass
