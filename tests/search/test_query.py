"""The query language: what each operator parses to, and where a malformed query goes wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from postroom.errors import InvalidInput
from search.query import And, DateBound, Flag, InMailbox, Not, Or, SizeBound, Term, parse
from search.text import QueryTokens

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def term(text: str, tokens: tuple[str, ...], field: str | None = None, column: int = 1) -> Term:
    return Term(text, QueryTokens(tokens), field, column)


def test_words_are_anded_and_phrases_keep_their_order() -> None:
    assert parse('lunch "weekly sync"') == And(
        (term("lunch", ("lunch",)), term("weekly sync", ("weekly", "sync"), column=7))
    )


@pytest.mark.parametrize("field", ["from", "to", "cc", "subject", "body", "filename"])
def test_text_fields(field: str) -> None:
    assert parse(f"{field}:Carol") == term("Carol", ("carol",), field)
    assert parse(f'{field}:"Carol Jones"') == term("Carol Jones", ("carol", "jones"), field)


def test_an_address_is_a_phrase_of_its_parts() -> None:
    assert parse("from:carol@corp.test") == term(
        "carol@corp.test", ("carol", "corp", "test"), "from"
    )


@pytest.mark.parametrize(
    ("q", "node"),
    [
        ("has:attachment", Flag("attachment")),
        ("is:unread", Flag("unread")),
        ("is:READ", Flag("read")),
        ("is:flagged", Flag("flagged")),
        ("in:Archive", InMailbox("Archive")),
        ("before:2024-03-01", DateBound("before", datetime(2024, 3, 1, tzinfo=UTC))),
        ("after:2024/03/01", DateBound("after", datetime(2024, 3, 1, tzinfo=UTC))),
        ("older_than:2w", DateBound("before", NOW - timedelta(days=14))),
        ("newer_than:3d", DateBound("after", NOW - timedelta(days=3))),
        ("newer_than:1y", DateBound("after", NOW - timedelta(days=365))),
        ("larger:10K", SizeBound("larger", 10 * 1024)),
        ("smaller:2M", SizeBound("smaller", 2 * 1024 * 1024)),
        ("larger:500", SizeBound("larger", 500)),
    ],
)
def test_filters(q: str, node: object) -> None:
    assert parse(q, now=NOW) == node


def test_or_binds_looser_than_and_and_minus_negates() -> None:
    assert parse("a b OR c -d", now=NOW) == Or(
        (
            And((term("a", ("a",)), term("b", ("b",), column=3))),
            And((term("c", ("c",), column=8), Not(term("d", ("d",), column=11)))),
        )
    )


def test_parentheses_group_and_and_is_optional() -> None:
    assert parse("-(a OR b) AND c") == And(
        (
            Not(Or((term("a", ("a",), column=3), term("b", ("b",), column=8)))),
            term("c", ("c",), column=15),
        )
    )


def test_a_hyphen_inside_a_word_is_not_negation() -> None:
    assert parse("e-mail") == term("e-mail", ("e", "mail"))


def test_cjk_words_become_bigram_phrases() -> None:
    assert parse("인증") == term("인증", ("인증",))
    assert parse("東京大学") == term("東京大学", ("東京", "京大", "大学"))
    assert parse("京") == Term("京", QueryTokens(("京",), prefix=True))


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("from:", "from: needs a value right after the colon (column 6)"),
        ("a (b", "this '(' is never closed (column 3)"),
        ("a b)", "unexpected ')'"),
        ('"open', "this quote is never closed"),
        ("a OR", "OR needs something on its right (column 3)"),
        ("OR a", "expected a search term before 'OR' (column 1)"),
        ("a -", "'-' must be followed by what to leave out"),
        ("is:spam", "is:spam is not known; use is:unread|read|flagged (column 4)"),
        ("has:pdf", "has:pdf is not known; use has:attachment (column 5)"),
        ("before:2024-02-30", "'2024-02-30' is not a date; write YYYY-MM-DD (column 8)"),
        ("older_than:soon", "older_than: takes an age like 7d"),
        ("larger:huge", "larger: takes a size like 500K or 2M, not 'huge' (column 8)"),
        ("colour:red", "unknown operator colour:"),
        ("!!!", "'!!!' has no letters or digits to search for (column 1)"),
        ("()", "expected a search term before ')' (column 2)"),
        ("", "type something to search for"),
        ("x" * 1001, "longer than 1000 characters"),
        (" ".join(["w"] * 65), "too many search terms (at most 64)"),
    ],
)
def test_malformed_queries_name_the_column(q: str, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse(q, now=NOW)
    assert message in raised.value.message
    assert raised.value.field == "q"
