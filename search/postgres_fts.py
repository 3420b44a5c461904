"""Search on PostgreSQL: the generated tsvector column ``search_documents.search_fts``.

Fields are told apart by tsvector weights (A subject, B sender, C to and cc, D body and
attachment names), so ``subject:`` and ``from:`` are exact in the index. ``to:``, ``cc:``,
``body:`` and ``filename:`` share a weight with another field; the GIN index narrows them by
weight and a word-boundary ``LIKE`` on the field's own column settles them. A query whose
words are all ``subject:`` or ``from:`` reads the narrow table ``search_fts_headers``
(migration 0014) instead: same lexemes, weights and positions, no bodies. A phrase is
narrowed by the GIN index of ``search_fts_pairs`` (migration 0015), which holds each
document's adjacent word pairs: every pair of the phrase must be there, and the full tsvector
still decides. Queries are written as tsquery text (``CAST(:q AS tsquery)``), not through
``to_tsquery``, so the tokens ``search.text`` made reach the index exactly as stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    and_,
    cast,
    column,
    func,
    literal_column,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import ColumnClause

from search.query import And, Node, Not, Or, Term
from search.sql_query import Candidates, SqlSearch
from storage.db.database import Database
from storage.db.models import Message, SearchDocument

__all__ = ["pair_lexeme", "pairs_tsquery", "postgres_search", "tsquery_leaf"]

WEIGHTS = {"subject": "A", "from": "B", "to": "C", "cc": "C", "body": "D", "filename": "D"}
SHARED_WEIGHT = {
    "to": SearchDocument.recipients_to,
    "cc": SearchDocument.recipients_cc,
    "body": SearchDocument.body,
    "filename": SearchDocument.filenames,
}
_tsvector: ColumnClause[Any] = literal_column("search_documents.search_fts")
_headers = table("search_fts_headers", column("id"), column("blob_key"), column("vector"))
"""Per document, the tsvector of its subject, sender and recipients (migration 0014)."""
HEADER_FIELDS = ("subject", "from")
"""Fields whose words ``search_fts_headers`` holds with their own weight."""
_pairs = table("search_fts_pairs", column("id"), column("blob_key"), column("vector"))
"""Per document, its adjacent token pairs ``'first second'`` (migration 0015)."""
MAX_LEXEME_BYTES = 2047
"""PostgreSQL's limit on one lexeme."""
LONG_PAIR_CHARS = 511
"""A pair over :data:`MAX_LEXEME_BYTES` is stored cut to this many characters (at most 2044
bytes in UTF-8), as ``search_fts_pairs_of`` in migration 0015 does."""
UNKNOWN_PAIRS = "'!'"
"""The lexeme of a document whose pairs were too many to store (migration 0015): it is a
candidate for every phrase, settled by the full tsvector. Never a pair (no space, no letter)."""
_SETTLE = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
    "set_config('max_parallel_workers_per_gather', '0', true)"
)


def tsquery_leaf(term: Term) -> str:
    weight = WEIGHTS[term.field] if term.field else ""
    lexemes = [f"'{token}'" for token in term.match.tokens]
    labels = [f":{weight}" if weight else ""] * len(lexemes)
    if term.match.prefix:
        labels[-1] = f":*{weight}"
    phrase = " <-> ".join(lexeme + label for lexeme, label in zip(lexemes, labels, strict=True))
    return f"({phrase})"


def pair_lexeme(first: str, second: str, *, prefix: bool = False) -> str:
    """The tsquery lexeme that finds the pair in ``search_fts_pairs``.

    A pair too long to be a lexeme is stored cut to :data:`LONG_PAIR_CHARS` characters, so
    the query cuts it the same way. A prefix (``second`` is the start of a token) is cut to
    that length too: a stored pair that was cut still starts with it.
    """
    pair = f"{first} {second}"
    if prefix or len(pair.encode()) > MAX_LEXEME_BYTES:
        pair = pair[:LONG_PAIR_CHARS]
    return f"'{pair}':*" if prefix else f"'{pair}'"


def pairs_tsquery(node: Node) -> str | None:
    """A tsquery on ``search_fts_pairs`` that every document matching ``node`` matches.

    A phrase needs each of its adjacent pairs (``"a b c"``: ``'a b' & 'b c'``), whatever the
    field (pairs carry no weight); a conjunction needs its parts' pairs, a disjunction needs
    pairs only if every branch does. A negation or a single word asks nothing (None).
    """
    if isinstance(node, Term):
        tokens, prefix, last = node.match.tokens, node.match.prefix, len(node.match.tokens) - 2
        pairs = [
            pair_lexeme(tokens[i], tokens[i + 1], prefix=prefix and i == last)
            for i in range(len(tokens) - 1)
        ]
        return "(" + " & ".join(pairs) + ")" if pairs else None
    if isinstance(node, And):
        parts = [part for child in node.children if (part := pairs_tsquery(child)) is not None]
        return " & ".join(parts) if parts else None
    if isinstance(node, Or):
        branches = [pairs_tsquery(child) for child in node.children]
        known = [branch for branch in branches if branch is not None]
        return "(" + " | ".join(known) + ")" if len(known) == len(branches) else None
    return None


def _header_only(node: Node) -> bool:
    """Every word of ``node`` is restricted to a field the header tsvector holds."""
    if isinstance(node, Term):
        return node.field in HEADER_FIELDS
    if isinstance(node, And | Or):
        return all(_header_only(child) for child in node.children)
    if isinstance(node, Not):
        return _header_only(node.child)
    return False


class _TsQuery:
    def _query(self, expression: BindParameter[str]) -> Any:
        return cast(expression, TSQUERY)

    def leaf(self, term: Term) -> str | None:
        return None if term.field in SHARED_WEIGHT else tsquery_leaf(term)

    def conjunction(self, positives: list[str], negatives: list[str]) -> str | None:
        return " & ".join([*positives, *(f"!({n})" for n in negatives)])

    def disjunction(self, parts: list[str]) -> str:
        return "(" + " | ".join(parts) + ")"

    def negation(self, part: str) -> str | None:
        return f"!({part})"

    def variant(self, node: Node) -> str:
        if _header_only(node):
            return "header"
        return "pairs" if pairs_tsquery(node) is not None else "full"

    def window_values(self, node: Node, variant: str) -> tuple[str, ...]:
        if variant == "pairs":
            pairs = pairs_tsquery(node)
            assert pairs is not None
            return (f"({pairs}) | {UNKNOWN_PAIRS}",)
        return ()

    def reads_document(self, variant: str) -> bool:
        return variant != "header"

    def contains(self, expression: BindParameter[str]) -> ColumnElement[bool]:
        return _tsvector.bool_op("@@")(self._query(expression))

    def term_values(self, term: Term) -> tuple[str, ...]:
        words = " ".join(term.match.tokens)
        return tsquery_leaf(term), f"% {words}%" if term.match.prefix else f"% {words} %"

    def term_condition(
        self, field: str | None, values: Sequence[BindParameter[str]]
    ) -> ColumnElement[bool]:
        assert field is not None
        padded = " " + SHARED_WEIGHT[field] + " "
        return and_(self.contains(values[0]), padded.like(values[1]))

    async def settle_plan(self, session: AsyncSession) -> None:
        # asyncpg prepares statements, and after five runs PostgreSQL may switch to a generic
        # plan that cannot see the tsquery: one planned for a rare word then walks the GIN
        # index for "the" (1.4 s instead of 0.1 s at 100 000 messages). Plan each search
        # for its own words; planning costs well under a millisecond.
        # No parallel workers: a search stops after a window of rows, and starting workers
        # for that cost more than the walk itself (57 ms instead of 15 ms for a common word
        # at 100 000 messages), on top of taking cores from every other request.
        await session.execute(_SETTLE)

    def window(
        self,
        candidates: Candidates,
        expression: BindParameter[str],
        variant: str,
        values: Sequence[BindParameter[str]],
    ) -> Candidates:
        # Newest first over the user's messages: for a common word the walk stops after the
        # window's worth of rows; for a rare one the planner takes a GIN index instead.
        # The tsvector is carried out so only the window's rows are ranked. A query naming
        # only header fields reads the narrow header table (same lexemes, weights and
        # positions for those fields, so the same matches and ranks) instead of the wide
        # document rows with their bodies. A phrase also needs its word pairs in the pair
        # table: GIN has no positions, so without them a phrase of two common words checks
        # every message holding both words; with them the planner can go to the few holding
        # the pairs. The full tsvector still decides.
        vector: Any = _tsvector
        if variant == "header":
            vector = _headers.c.vector
            candidates = candidates.join(_headers, _headers.c.blob_key == Message.blob_key)
        elif variant == "pairs":
            candidates = candidates.join(_pairs, _pairs.c.blob_key == Message.blob_key).where(
                _pairs.c.vector.bool_op("@@")(self._query(values[0]))
            )
        return (
            candidates.add_columns(
                Message.received_at.label("walk"), vector.label("search_tsvector")
            )
            .where(vector.bool_op("@@")(self._query(expression)))
            .order_by(Message.received_at.desc(), Message.id.desc())
        )

    def score(self, window: Any, expression: BindParameter[str]) -> ColumnElement[Any]:
        return -func.ts_rank(window.c.search_tsvector, self._query(expression))


def postgres_search(db: Database) -> SqlSearch:
    """Search on PostgreSQL: the generated tsvector column of ``search_documents``."""
    return SqlSearch(db, _TsQuery(), "postgresql-tsvector")
