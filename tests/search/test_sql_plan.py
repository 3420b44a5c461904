"""The SQL backends plan a search into a shape and its values, and build one statement per shape.

A shape must change whenever the statement would, and never carry a value: otherwise two
searches would share a statement that answers only one of them (or every search would build
its own, which is what the plan exists to avoid).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from search.backend import SearchRequest
from search.postgres_fts import pairs_tsquery, postgres_search
from search.query import parse
from search.sql_query import RANKED_WINDOW, Plan, TextEngine, plan_search
from search.sqlite_fts import sqlite_search
from storage.db.database import Database

NO_DATABASE = cast(Database, None)  # planning never touches it
ENGINES = {
    "sqlite": sqlite_search(NO_DATABASE).engine,
    "postgresql": postgres_search(NO_DATABASE).engine,
}


def plan(
    engine: TextEngine, q: str, *, offset: int = 0, boxes: dict[str, str] | None = None
) -> tuple[tuple[Any, ...], Plan]:
    request = SearchRequest("user-1", parse(q), 21, offset, boxes or {})
    return plan_search(engine, request)


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("lunch", "quarterly"),
        ("lunch friday", "quarterly revenue"),
        ('"weekly sync"', '"quarterly report"'),
        ("from:carol", "from:dave"),
        ("to:ann lunch", "to:bob notes"),
        ("notes -big", "lunch -friday"),
        ("lunch is:unread in:inbox", "notes is:unread in:inbox"),
        ("notes newer_than:2d larger:2K", "lunch after:2021-01-01 larger:9K"),
        ("is:flagged has:attachment", "is:flagged has:attachment"),
        ("인증", "会議"),
    ],
)
def test_searches_differing_only_in_values_share_a_shape(name: str, one: str, other: str) -> None:
    engine = ENGINES[name]
    boxes = {"inbox": "box-1"}
    (shape_one, values_one), (shape_other, values_other) = (
        plan(engine, one, boxes=boxes),
        plan(engine, other, boxes=boxes),
    )
    assert shape_one == shape_other
    assert len(values_one.values) == len(values_other.values)
    assert hash(shape_one) == hash(shape_other)


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("lunch", "is:unread"),
        ("lunch", "lunch is:unread"),
        ("is:unread", "is:read"),
        ("is:flagged", "has:attachment"),
        ("before:2021-01-01", "after:2021-01-01"),
        ("larger:2K", "smaller:2K"),
        ("lunch OR is:flagged", "lunch is:flagged"),
        ("in:inbox", "in:nowhere"),
    ],
)
def test_searches_differing_in_structure_do_not(name: str, one: str, other: str) -> None:
    engine = ENGINES[name]
    boxes = {"inbox": "box-1"}
    assert plan(engine, one, boxes=boxes)[0] != plan(engine, other, boxes=boxes)[0]


@pytest.mark.parametrize(
    ("name", "one", "other"),
    [
        # FTS5 cannot say a negation alone (NOT IN instead); a tsquery can.
        ("sqlite", "-lunch has:attachment", "lunch has:attachment"),
        # tsvector: header fields read another vector; to: and cc: are settled by LIKE on
        # their own columns. FTS5 says all of them in the expression, a value.
        ("postgresql", "from:carol", "lunch"),
        ("postgresql", "to:ann lunch", "cc:ann lunch"),
    ],
)
def test_what_one_engine_says_differently(name: str, one: str, other: str) -> None:
    assert plan(ENGINES[name], one)[0] != plan(ENGINES[name], other)[0]


def test_every_value_is_a_parameter_in_slot_order() -> None:
    when = datetime(2021, 1, 1, tzinfo=UTC)
    shape, values = plan(
        ENGINES["postgresql"], "lunch in:inbox after:2021-01-01 larger:2K", boxes={"inbox": "b1"}
    )
    assert values.parameters == {
        "s0": "user-1",
        "s1": "('lunch')",
        "s2": "b1",
        "s3": when,
        "s4": 2048,
        "s5": RANKED_WINDOW,
        "s6": 21,
        "s7": 0,
    }
    assert "lunch" not in repr(shape) and "b1" not in repr(shape)


def test_pages_share_a_shape_and_carry_their_offset() -> None:
    engine = ENGINES["sqlite"]
    (first, first_values), (second, second_values) = (
        plan(engine, "lunch"),
        plan(engine, "lunch", offset=20),
    )
    assert first == second
    assert first_values.values[-1] == 0 and second_values.values[-1] == 20


def test_only_header_fields_read_the_header_table_on_postgresql() -> None:
    engine = ENGINES["postgresql"]
    assert engine.variant(parse("from:carol subject:report -subject:lunch")) == "header"
    assert engine.variant(parse("from:carol report")) == "full"
    assert engine.variant(parse("subject:report OR body:report")) == "full"
    assert ENGINES["sqlite"].variant(parse("from:carol")) == "fts5"


def test_phrases_on_postgresql_are_narrowed_by_their_word_pairs() -> None:
    """Every pair of a phrase is a value for the pair index; a prefix pair stays a prefix;
    a document whose pairs were too many to store (``'!'``) is a candidate for any phrase."""
    engine = ENGINES["postgresql"]
    shape, values = plan(engine, '"weekly sync" notes')
    assert shape[3] == ("pairs", (2,)) and values.values[2] == "(('weekly sync')) | '!'"
    assert "weekly" not in repr(shape)
    assert (
        pairs_tsquery(parse('"a b c" OR "회의 인"'))
        == "(('a b' & 'b c') | ('회의 의' & '의 인':*))"
    )
    assert engine.variant(parse('"weekly sync" -"sync notes"')) == "pairs"
    assert pairs_tsquery(parse('"weekly sync" -"sync notes"')) == "('weekly sync')"
    assert engine.variant(parse("weekly sync")) == "full"
    assert engine.variant(parse('"weekly sync" OR notes')) == "full"
    assert engine.variant(parse('-"weekly sync" notes')) == "full"
    assert engine.variant(parse('subject:"weekly sync"')) == "header"
