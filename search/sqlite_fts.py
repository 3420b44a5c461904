"""Search on SQLite: the FTS5 table ``search_fts`` over ``search_documents`` (migration 0006).

FTS5 has column filters, phrases, prefixes and a binary ``NOT``, so every text term maps onto
its query syntax; only a negation with nothing positive beside it becomes ``NOT IN``. Ranking
is bm25 with the subject weighted highest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import BindParameter, ColumnElement, func, literal_column, select, table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import column
from sqlalchemy.sql.expression import ColumnClause

from search.documents import COLUMN_OF
from search.query import Node, Term
from search.sql_query import Candidates, SqlSearch
from storage.db.database import Database
from storage.db.models import SearchDocument

__all__ = ["FIELDS", "fts5_leaf", "sqlite_search"]

FIELDS = COLUMN_OF
# bm25 weights, in the column order of the FTS5 table.
WEIGHTS = (8.0, 4.0, 2.0, 2.0, 1.0, 2.0)

_fts = table("search_fts", column("rowid"))
_fts_table: ColumnClause[Any] = literal_column("search_fts")


def fts5_leaf(term: Term) -> str:
    phrase = '"' + " ".join(token.replace('"', '""') for token in term.match.tokens) + '"'
    if term.match.prefix:
        phrase += " *"
    return f"{{{FIELDS[term.field]}}} : {phrase}" if term.field else phrase


class _Fts5:
    def leaf(self, term: Term) -> str | None:
        return fts5_leaf(term)

    def conjunction(self, positives: list[str], negatives: list[str]) -> str | None:
        if not positives:
            return None
        expression = " AND ".join(f"({p})" for p in positives)
        for negative in negatives:
            expression = f"({expression}) NOT ({negative})"
        return expression

    def disjunction(self, parts: list[str]) -> str:
        return " OR ".join(f"({p})" for p in parts)

    def negation(self, part: str) -> str | None:
        return None  # FTS5's NOT needs a left side; the caller falls back to NOT IN

    def variant(self, node: Node) -> str:
        return "fts5"  # one table; column filters are part of the expression

    def reads_document(self, variant: str) -> bool:
        return True  # the FTS5 rowid is the document's id

    def window_values(self, node: Node, variant: str) -> tuple[str, ...]:
        return ()  # FTS5 keeps positions: a phrase needs no help

    def contains(self, expression: BindParameter[str]) -> ColumnElement[bool]:
        matching = select(_fts.c.rowid).where(_fts_table.bool_op("MATCH")(expression))
        return SearchDocument.id.in_(matching)

    def term_values(self, term: Term) -> tuple[str, ...]:
        return (fts5_leaf(term),)

    def term_condition(
        self, field: str | None, values: Sequence[BindParameter[str]]
    ) -> ColumnElement[bool]:
        return self.contains(values[0])

    async def settle_plan(self, session: AsyncSession) -> None:
        """Nothing: SQLite plans every statement afresh, and knows no statistics for FTS5."""

    def window(
        self,
        candidates: Candidates,
        expression: BindParameter[str],
        variant: str,
        values: Sequence[BindParameter[str]],
    ) -> Candidates:
        # FTS5 hands out matches in rowid order for free, newest content first; bm25 is
        # computed only for the rows the walk keeps (the user's, past the filters).
        return (
            candidates.add_columns(
                _fts.c.rowid.label("walk"), func.bm25(_fts_table, *WEIGHTS).label("score")
            )
            .join(_fts, _fts.c.rowid == SearchDocument.id)
            .where(_fts_table.bool_op("MATCH")(expression))
            .order_by(_fts.c.rowid.desc())
        )

    def score(self, window: Any, expression: BindParameter[str]) -> ColumnElement[Any]:
        return cast(ColumnElement[Any], window.c.score)


def sqlite_search(db: Database) -> SqlSearch:
    """Search on SQLite: FTS5 kept by triggers over ``search_documents``."""
    return SqlSearch(db, _Fts5(), "sqlite-fts5")
