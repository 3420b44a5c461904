"""The query tree as OpenSearch query DSL (a pure function, unit-tested operator by operator).

Documents hold the same normalised text as ``search_documents`` in fields analysed by the
``whitespace`` analyzer, so a term is a ``match_phrase`` of its tokens, exactly as the SQL
engines match it; a lone CJK character is a ``match_phrase_prefix``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search.documents import COLUMN_OF
from search.query import And, DateBound, Flag, InMailbox, Node, Not, Or, SizeBound, Term

__all__ = ["TEXT_FIELDS", "to_dsl", "user_query"]

TEXT_FIELDS = COLUMN_OF
BOOSTS = {
    "subject": 8,
    "sender": 4,
    "recipients_to": 2,
    "recipients_cc": 2,
    "body": 1,
    "filenames": 2,
}
_FLAGS = {
    "unread": ("seen", False),
    "read": ("seen", True),
    "flagged": ("flagged", True),
    "attachment": ("has_attachments", True),
}


def _term(term: Term) -> dict[str, Any]:
    text = " ".join(term.match.tokens)
    if term.field is None:
        return {
            "multi_match": {
                "query": text,
                "type": "phrase_prefix" if term.match.prefix else "phrase",
                "fields": [f"{name}^{boost}" for name, boost in BOOSTS.items()],
            }
        }
    kind = "match_phrase_prefix" if term.match.prefix else "match_phrase"
    return {kind: {TEXT_FIELDS[term.field]: {"query": text}}}


def to_dsl(node: Node, mailboxes: Mapping[str, str]) -> dict[str, Any]:
    if isinstance(node, Term):
        return _term(node)
    if isinstance(node, And):
        must = [to_dsl(c, mailboxes) for c in node.children if not isinstance(c, Not)]
        must_not = [to_dsl(c.child, mailboxes) for c in node.children if isinstance(c, Not)]
        clause: dict[str, Any] = {"must": must} if must else {"must": [{"match_all": {}}]}
        if must_not:
            clause["must_not"] = must_not
        return {"bool": clause}
    if isinstance(node, Or):
        return {
            "bool": {
                "should": [to_dsl(c, mailboxes) for c in node.children],
                "minimum_should_match": 1,
            }
        }
    if isinstance(node, Not):
        return {"bool": {"must": [{"match_all": {}}], "must_not": [to_dsl(node.child, mailboxes)]}}
    if isinstance(node, Flag):
        name, value = _FLAGS[node.name]
        return {"term": {name: value}}
    if isinstance(node, InMailbox):
        mailbox_id = mailboxes.get(node.name.lower())
        return {"term": {"mailbox_id": mailbox_id}} if mailbox_id else {"match_none": {}}
    if isinstance(node, DateBound):
        bound = "lt" if node.op == "before" else "gte"
        return {"range": {"received_at": {bound: node.when.isoformat()}}}
    assert isinstance(node, SizeBound)
    return {"range": {"size": {"gt" if node.op == "larger" else "lt": node.size}}}


def user_query(
    user_id: str, node: Node, mailboxes: Mapping[str, str], *, limit: int, offset: int
) -> dict[str, Any]:
    """The whole search body: always filtered to the user, best first, then newest."""
    return {
        "query": {
            "bool": {"filter": [{"term": {"user_id": user_id}}], "must": [to_dsl(node, mailboxes)]}
        },
        "sort": [{"_score": "desc"}, {"received_at": "desc"}, {"message_id": "desc"}],
        "from": offset,
        "size": limit,
        "_source": False,
    }
