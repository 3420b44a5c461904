"""The OpenSearch query DSL generated for every operator (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from fnmatch import fnmatch
from typing import Any

import pytest

from search.opensearch import INDEX, INDEX_TEMPLATE, SYNC_INDEX
from search.opensearch_dsl import to_dsl, user_query
from search.query import parse

NOW = datetime(2026, 11, 23, tzinfo=UTC)
BOOSTED = ["subject^8", "sender^4", "recipients_to^2", "recipients_cc^2", "body^1", "filenames^2"]


def dsl(q: str, mailboxes: dict[str, str] | None = None) -> dict[str, Any]:
    return to_dsl(parse(q, now=NOW), mailboxes or {})


def test_a_word_is_a_phrase_over_every_field() -> None:
    assert dsl("Résumé") == {
        "multi_match": {"query": "resume", "type": "phrase", "fields": BOOSTED}
    }


def test_a_quoted_phrase_and_an_address() -> None:
    assert dsl('"weekly sync"')["multi_match"]["query"] == "weekly sync"
    assert dsl("carol@corp.test")["multi_match"]["query"] == "carol corp test"


def test_a_lone_cjk_character_is_a_prefix() -> None:
    assert dsl("京")["multi_match"]["type"] == "phrase_prefix"
    assert dsl("인증")["multi_match"] == {"query": "인증", "type": "phrase", "fields": BOOSTED}


@pytest.mark.parametrize(
    ("operator", "field"),
    [
        ("from", "sender"),
        ("to", "recipients_to"),
        ("cc", "recipients_cc"),
        ("subject", "subject"),
        ("body", "body"),
        ("filename", "filenames"),
    ],
)
def test_field_operators(operator: str, field: str) -> None:
    assert dsl(f'{operator}:"Carol Jones"') == {"match_phrase": {field: {"query": "carol jones"}}}
    assert dsl(f"{operator}:東") == {"match_phrase_prefix": {field: {"query": "東"}}}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("has:attachment", {"term": {"has_attachments": True}}),
        ("is:unread", {"term": {"seen": False}}),
        ("is:read", {"term": {"seen": True}}),
        ("is:flagged", {"term": {"flagged": True}}),
        ("before:2024-03-01", {"range": {"received_at": {"lt": "2024-03-01T00:00:00+00:00"}}}),
        ("after:2024-03-01", {"range": {"received_at": {"gte": "2024-03-01T00:00:00+00:00"}}}),
        ("older_than:1d", {"range": {"received_at": {"lt": "2026-11-22T00:00:00+00:00"}}}),
        ("newer_than:1w", {"range": {"received_at": {"gte": "2026-11-16T00:00:00+00:00"}}}),
        ("larger:1K", {"range": {"size": {"gt": 1024}}}),
        ("smaller:1M", {"range": {"size": {"lt": 1048576}}}),
    ],
)
def test_filters(q: str, expected: dict[str, Any]) -> None:
    assert dsl(q) == expected


def test_in_uses_the_resolved_mailbox_id() -> None:
    assert dsl("in:Archive", {"archive": "mbx1"}) == {"term": {"mailbox_id": "mbx1"}}
    assert dsl("in:Archive") == {"match_none": {}}


def test_and_or_not_and_parentheses() -> None:
    flagged = {"term": {"flagged": True}}
    unread = {"term": {"seen": False}}
    assert dsl("is:flagged -is:unread") == {"bool": {"must": [flagged], "must_not": [unread]}}
    assert dsl("is:flagged OR is:unread") == {
        "bool": {"should": [flagged, unread], "minimum_should_match": 1}
    }
    assert dsl("-is:unread") == {"bool": {"must": [{"match_all": {}}], "must_not": [unread]}}
    assert dsl("-(is:flagged OR is:unread) has:attachment") == {
        "bool": {
            "must": [{"term": {"has_attachments": True}}],
            "must_not": [{"bool": {"should": [flagged, unread], "minimum_should_match": 1}}],
        }
    }


def test_every_search_is_filtered_to_the_user_and_sorted() -> None:
    body = user_query("u1", parse("is:unread"), {}, limit=21, offset=40)
    assert body == {
        "query": {
            "bool": {
                "filter": [{"term": {"user_id": "u1"}}],
                "must": [{"term": {"seen": False}}],
            }
        },
        "sort": [{"_score": "desc"}, {"received_at": "desc"}, {"message_id": "desc"}],
        "from": 40,
        "size": 21,
        "_source": False,
    }


def test_the_template_maps_every_field_the_dsl_uses() -> None:
    mapped = INDEX_TEMPLATE["template"]["mappings"]["properties"]
    for field in ("seen", "flagged", "has_attachments", "received_at", "size", "mailbox_id"):
        assert field in mapped
    for name in BOOSTED:
        assert mapped[name.split("^")[0]] == {"type": "text", "analyzer": "whitespace"}
    assert mapped["user_id"] == {"type": "keyword"}
    # The sync-position index must not inherit the strict message mapping.
    [pattern] = INDEX_TEMPLATE["index_patterns"]
    assert fnmatch(INDEX, pattern)
    assert not fnmatch(SYNC_INDEX, pattern)
