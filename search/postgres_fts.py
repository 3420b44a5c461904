"""Search on PostgreSQL: the generated tsvector column ``search_documents.search_fts``.

Fields are told apart by tsvector weights (A subject, B sender, C to and cc, D body and
attachment names), so ``subject:`` and ``from:`` are exact in the index. ``to:``, ``cc:``,
``body:`` and ``filename:`` share a weight with another field; the GIN index narrows them by
weight and a word-boundary ``LIKE`` on the field's own column settles them. Queries are
written as tsquery text (``CAST(:q AS tsquery)``), not through ``to_tsquery``, so the tokens
``search.text`` made reach the index exactly as stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, bindparam, cast, func, literal_column, text
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import ColumnClause

from search.query import Term
from search.sql_query import Candidates, SqlSearch
from storage.db.database import Database
from storage.db.models import Message, SearchDocument

__all__ = ["postgres_search", "tsquery_leaf"]

WEIGHTS = {"subject": "A", "from": "B", "to": "C", "cc": "C", "body": "D", "filename": "D"}
SHARED_WEIGHT = {
    "to": SearchDocument.recipients_to,
    "cc": SearchDocument.recipients_cc,
    "body": SearchDocument.body,
    "filename": SearchDocument.filenames,
}
_tsvector: ColumnClause[Any] = literal_column("search_documents.search_fts")


def tsquery_leaf(term: Term) -> str:
    weight = WEIGHTS[term.field] if term.field else ""
    lexemes = [f"'{token}'" for token in term.match.tokens]
    labels = [f":{weight}" if weight else ""] * len(lexemes)
    if term.match.prefix:
        labels[-1] = f":*{weight}"
    phrase = " <-> ".join(lexeme + label for lexeme, label in zip(lexemes, labels, strict=True))
    return f"({phrase})"


class _TsQuery:
    def _query(self, expression: str) -> Any:
        # Anonymous, so statements of the same shape share one compiled form in SQLAlchemy's
        # cache (numbered names made every search a cache miss and a new cache entry).
        return cast(bindparam(None, expression, type_=String), TSQUERY)

    def leaf(self, term: Term) -> str | None:
        return None if term.field in SHARED_WEIGHT else tsquery_leaf(term)

    def conjunction(self, positives: list[str], negatives: list[str]) -> str | None:
        return " & ".join([*positives, *(f"!({n})" for n in negatives)])

    def disjunction(self, parts: list[str]) -> str:
        return "(" + " | ".join(parts) + ")"

    def negation(self, part: str) -> str | None:
        return f"!({part})"

    def contains(self, expression: str) -> ColumnElement[bool]:
        return _tsvector.bool_op("@@")(self._query(expression))

    def term_condition(self, term: Term) -> ColumnElement[bool]:
        assert term.field is not None
        words = " ".join(term.match.tokens)
        pattern = f"% {words}%" if term.match.prefix else f"% {words} %"
        padded = " " + SHARED_WEIGHT[term.field] + " "
        return and_(self.contains(tsquery_leaf(term)), padded.like(pattern))

    async def settle_plan(self, session: AsyncSession) -> None:
        # asyncpg prepares statements, and after five runs PostgreSQL may switch to a generic
        # plan that cannot see the tsquery: one planned for a rare word then walks the GIN
        # index for "the" (1.4 s instead of 0.1 s at 100 000 messages). Plan each search
        # for its own words; planning costs well under a millisecond.
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))

    def window(self, candidates: Candidates, expression: str) -> Candidates:
        # Newest first over the user's messages: for a common word the walk stops after the
        # window's worth of rows; for a rare one the planner takes the GIN index instead.
        # The stored tsvector is carried out so only the window's rows are ranked.
        return (
            candidates.add_columns(
                Message.received_at.label("walk"), _tsvector.label("search_tsvector")
            )
            .where(self.contains(expression))
            .order_by(Message.received_at.desc(), Message.id.desc())
        )

    def score(self, window: Any, expression: str) -> ColumnElement[Any]:
        return -func.ts_rank(window.c.search_tsvector, self._query(expression))


def postgres_search(db: Database) -> SqlSearch:
    """Search on PostgreSQL: the generated tsvector column of ``search_documents``."""
    return SqlSearch(db, _TsQuery(), "postgresql-tsvector")
