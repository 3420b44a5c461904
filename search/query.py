"""The query language, parsed into a small tree that every backend translates.

Grammar (``OR`` binds looser than the implicit AND between terms)::

    query    = or_expr
    or_expr  = and_expr { "OR" and_expr }
    and_expr = unary { ["AND"] unary }
    unary    = "-" unary | primary
    primary  = "(" or_expr ")" | OPERATOR ":" value | '"' phrase '"' | word

Operators: ``from: to: cc: subject: body: filename:`` (text in one field), ``has:attachment``,
``is:unread|read|flagged``, ``in:MAILBOX``, ``before: after:`` (``YYYY-MM-DD``),
``older_than: newer_than:`` (``7d``, ``2w``, ``3m``, ``1y``), ``larger: smaller:`` (``10K``,
``5M``). A malformed query raises :class:`InvalidInput` naming the column where it goes wrong,
because a person fixing a query needs to know where to look.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from postroom.errors import InvalidInput
from search.text import QueryTokens, query_tokens

__all__ = [
    "And",
    "DateBound",
    "Flag",
    "InMailbox",
    "Node",
    "Not",
    "Or",
    "SizeBound",
    "Term",
    "parse",
]

TEXT_FIELDS = ("subject", "from", "to", "cc", "body", "filename")
MAX_QUERY_LENGTH = 1000
MAX_TERMS = 64


@dataclass(frozen=True)
class Term:
    """Words that must appear together; ``field`` None means in any field."""

    text: str
    match: QueryTokens
    field: str | None = None
    column: int = 1


@dataclass(frozen=True)
class Flag:
    """``is:unread``, ``is:read``, ``is:flagged`` or ``has:attachment`` (name ``attachment``)."""

    name: str
    column: int = 1


@dataclass(frozen=True)
class InMailbox:
    name: str
    column: int = 1


@dataclass(frozen=True)
class DateBound:
    """Received before (exclusive) or after (inclusive) ``when``."""

    op: str
    when: datetime


@dataclass(frozen=True)
class SizeBound:
    """Size in bytes larger or smaller than ``size``."""

    op: str
    size: int


@dataclass(frozen=True)
class Not:
    child: Node


@dataclass(frozen=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[Node, ...]


Node = Term | Flag | InMailbox | DateBound | SizeBound | Not | And | Or

_TOKEN = re.compile(r'\s+|\(|\)|"[^"]*"?|-(?=[^\s)])|[^\s()"]+(?:"[^"]*"?)?')
_OPERATOR = re.compile(r"([A-Za-z_]+):(.*)", re.S)
_AGE = re.compile(r"(\d{1,5})([dwmy])")
_SIZE = re.compile(r"(\d{1,12})([kmg]?)b?")
_AGE_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}
_SIZE_FACTOR = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_FLAGS = {"is": ("unread", "read", "flagged"), "has": ("attachment",)}
OPERATORS = (
    *TEXT_FIELDS,
    "has",
    "is",
    "in",
    "before",
    "after",
    "older_than",
    "newer_than",
    "larger",
    "smaller",
)


def _error(message: str, column: int) -> InvalidInput:
    return InvalidInput(f"{message} (column {column})", field="q")


@dataclass
class _Lexeme:
    text: str
    column: int


class _Parser:
    def __init__(self, query: str, now: datetime) -> None:
        self.now = now
        self.lexemes = [
            _Lexeme(m.group(), m.start() + 1)
            for m in _TOKEN.finditer(query)
            if not m.group().isspace()
        ]
        self.position = 0
        self.end = len(query) + 1
        self.terms = 0

    def peek(self) -> _Lexeme | None:
        return self.lexemes[self.position] if self.position < len(self.lexemes) else None

    def take(self) -> _Lexeme:
        lexeme = self.lexemes[self.position]
        self.position += 1
        return lexeme

    def parse(self) -> Node:
        node = self.or_expr()
        if (extra := self.peek()) is not None:
            raise _error(f"unexpected {extra.text!r}; a ')' without its '('?", extra.column)
        return node

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while (lexeme := self.peek()) is not None and lexeme.text == "OR":
            self.take()
            if self.peek() is None or self.peek().text in (")", "OR"):  # type: ignore[union-attr]
                raise _error("OR needs something on its right", lexeme.column)
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self) -> Node:
        children: list[Node] = []
        while (lexeme := self.peek()) is not None and lexeme.text not in (")", "OR"):
            if lexeme.text == "AND":
                self.take()
                continue
            children.append(self.unary())
        if not children:
            where = self.peek()
            if where is None:
                raise _error("the query ends where a search term was expected", self.end)
            raise _error(f"expected a search term before {where.text!r}", where.column)
        return children[0] if len(children) == 1 else And(tuple(children))

    def unary(self) -> Node:
        lexeme = self.peek()
        assert lexeme is not None
        if lexeme.text == "-":
            self.take()
            if self.peek() is None or self.peek().text in (")", "OR"):  # type: ignore[union-attr]
                raise _error("'-' must be followed by what to leave out", lexeme.column)
            return Not(self.unary())
        return self.primary()

    def primary(self) -> Node:
        lexeme = self.take()
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise _error(f"too many search terms (at most {MAX_TERMS})", lexeme.column)
        if lexeme.text == "(":
            node = self.or_expr()
            closing = self.peek()
            if closing is None or closing.text != ")":
                raise _error("this '(' is never closed", lexeme.column)
            self.take()
            return node
        if lexeme.text.startswith('"'):
            return self.term(self.phrase(lexeme.text, lexeme.column), None, lexeme.column)
        if (found := _OPERATOR.fullmatch(lexeme.text)) is not None:
            return self.operator(found.group(1), found.group(2), lexeme)
        return self.term(lexeme.text, None, lexeme.column)

    def phrase(self, text: str, column: int) -> str:
        if len(text) < 2 or not text.endswith('"'):
            raise _error('this quote is never closed; add the closing "', column)
        return text[1:-1]

    def term(self, text: str, field: str | None, column: int) -> Term:
        match = query_tokens(text)
        if not match.tokens:
            raise _error(f"{text!r} has no letters or digits to search for", column)
        return Term(text, match, field, column)

    def operator(self, name: str, value: str, lexeme: _Lexeme) -> Node:
        column = lexeme.column
        key = name.lower()
        if key not in OPERATORS:
            raise _error(
                f"unknown operator {name}:; use one of {', '.join(o + ':' for o in OPERATORS)}, "
                f'or quote the text ("{lexeme.text}") to search for it as written',
                column,
            )
        value_column = column + len(name) + 1
        if value.startswith('"'):
            value = self.phrase(value, value_column)
        if not value:
            raise _error(f"{key}: needs a value right after the colon", value_column)
        if key in TEXT_FIELDS:
            return self.term(value, key, column)
        if key in _FLAGS:
            if value.lower() not in _FLAGS[key]:
                choices = "|".join(_FLAGS[key])
                raise _error(f"{key}:{value} is not known; use {key}:{choices}", value_column)
            return Flag(value.lower(), column)
        if key == "in":
            return InMailbox(value, column)
        if key in ("before", "after"):
            return DateBound(key, self.date(value, value_column))
        if key in ("older_than", "newer_than"):
            age = _AGE.fullmatch(value.lower())
            if age is None:
                raise _error(f"{key}: takes an age like 7d, 2w, 3m or 1y, not {value!r}", column)
            when = self.now - timedelta(days=int(age.group(1)) * _AGE_DAYS[age.group(2)])
            return DateBound("before" if key == "older_than" else "after", when)
        size = _SIZE.fullmatch(value.lower())
        if size is None:
            raise _error(f"{key}: takes a size like 500K or 2M, not {value!r}", value_column)
        return SizeBound(key, int(size.group(1)) * _SIZE_FACTOR[size.group(2)])

    def date(self, value: str, column: int) -> datetime:
        try:
            day = datetime.strptime(value.replace("/", "-"), "%Y-%m-%d")
        except ValueError:
            raise _error(f"{value!r} is not a date; write YYYY-MM-DD", column) from None
        return day.replace(tzinfo=UTC)


def parse(query: str, *, now: datetime | None = None) -> Node:
    """The tree of ``query``; ``now`` anchors ``older_than:``/``newer_than:``."""
    if len(query) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"the query is longer than {MAX_QUERY_LENGTH} characters", field="q")
    if not query.strip():
        raise InvalidInput("type something to search for", field="q")
    return _Parser(query, now or datetime.now(UTC)).parse()
