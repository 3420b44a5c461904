"""PostgreSQL narrows phrases by adjacent word pairs (``search_fts_pairs``, migration 0015).

The pair index is only a necessary condition in front of the full tsvector's ``<->`` check, so
every phrase must find exactly what the plain ``<->`` check finds, in the same order (same
ranks), also in the corners where the tsvector's positions are surprising: across a field
boundary, repeated words, a pair that exists without the phrase, a prefix, weights, the
position cap of long mail. And the pair table must hold exactly the adjacent pairs of
``search_fts`` after every kind of write.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from alembic import command
from sqlalchemy import text

from search.backend import SearchRequest
from search.documents import index_stored
from search.postgres_fts import MAX_LEXEME_BYTES, _TsQuery, postgres_search
from search.query import Node, parse
from search.sql_query import SqlSearch
from storage.db.database import Database
from storage.schema import alembic_config, migrate
from storage.transaction import transaction
from tests.support.gateway_api import Api, Client, api_for, compose
from tests.support.services import postgres_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

RUNES = "ᚠ" * 400 + " " + "ᚢ" * 400  # 2401 bytes as a pair: stored cut
# 40 000 CJK characters (4 bytes each in UTF-8) are 40 000 distinct bigrams: past the position
# cap each pairs with the token at 16382, too many pairs to store, so the document's pair
# vector is just '!' (pairs unknown), and every phrase query must still consider it.
_RNG = random.Random(5)
HUGE = "".join(chr(_RNG.randrange(0x20000, 0x2A6DF)) for _ in range(40_000))
MAX_PAIR_BYTES = 512 * 1024  # migration 0015
MAIL: dict[str, dict[str, str]] = {
    "sync": dict(subject="Weekly sync notes", text="Notes of the weekly sync."),
    "boundary": dict(subject="Budget review", text="Numbers below."),
    "repeat": dict(subject="Echo", text="a a a b a"),
    "fox": dict(subject="Story", text="the quick brown fox jumps"),
    "apart": dict(subject="Colours", text="red green and green blue"),
    "korean": dict(subject="안내", text="회의 인증메일 회원가입"),
    "runes": dict(subject="Runes", text=f"old {RUNES} new"),
    # From position 16383 on every token shares that position: the tsvector cannot see
    # "w16390 w16391" as a phrase, but it sees the token at 16382 next to each later one.
    "long": dict(subject="Long", text=" ".join(f"w{i}" for i in range(16_400)) + " zed yak"),
    "huge": dict(subject="Huge", text=HUGE),
}
SENDER = "Carol Jones <carol@corp.test>"

PHRASES = [
    ('"weekly sync"', {"sync"}),
    ('"sync weekly"', set()),
    ('"review carol"', {"boundary"}),  # subject, then the sender's first word
    ('"notes carol"', {"sync"}),
    ('"a a a"', {"repeat"}),
    ('"a a a a"', set()),
    ('"a b a"', {"repeat"}),
    ('"quick brown fox"', {"fox"}),
    ('"quick brown fox jumps"', {"fox"}),
    ('"brown quick fox"', set()),
    ('"red green blue"', set()),  # both pairs are there, the phrase is not
    ('"green blue"', {"apart"}),
    ('"회의 인"', {"korean"}),  # the last CJK character is a prefix: '회의' <-> '인':*
    ('"회의 메"', set()),
    ("회원가입", {"korean"}),  # a CJK word is a phrase of bigrams
    ("인증메일", {"korean"}),
    (f'"old {RUNES}"', {"runes"}),
    (f'"{RUNES} new"', {"runes"}),
    (f'"{RUNES[::-1]}"', set()),
    ('"w16300 w16301"', {"long"}),
    ('"w16390 w16391"', set()),
    ('"zed yak"', set()),
    ('subject:"weekly sync"', {"sync"}),
    ('subject:"sync notes" weekly', {"sync"}),
    ('subject:"the weekly" sync', set()),  # the pair is in the body, not the subject
    ('from:"carol jones" "weekly sync"', {"sync"}),
    ('body:"weekly sync"', {"sync"}),
    ('body:"sync notes"', set()),
    ('"weekly sync" -notes', set()),
    ('"the weekly" -lunch', {"sync"}),
    ('notes -"weekly sync"', set()),
    ('carol -"weekly sync"', set(MAIL) - {"sync"}),
    ('"weekly sync" OR "quick brown"', {"sync", "fox"}),
    ('"weekly sync" OR echo', {"sync", "repeat"}),
    ('("weekly sync" OR "brown fox") -jumps', {"sync"}),
    ('"quick brown" is:unread', {"fox"}),
    ('"quick brown" OR is:flagged', {"fox"}),
    (HUGE[:3], {"huge"}),  # found through '!': its pairs were not stored
    (HUGE[30_000:30_004], set()),  # past the position cap every bigram sits at 16383
    (f'"{HUGE[:2]} {HUGE[2:4]}"', set()),
]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(url, Path(tmp_path_factory.mktemp("pairs"))) as api:
        yield api


async def deliver(api: Api, client: Client, subject: str, body: str) -> str:
    raw = compose(subject, sender=SENDER, to="ann@pairs.test", text=body)
    message = await api.deliver(client.user, raw)
    async with transaction(api.store) as session:
        await index_stored(session, message.blob_key)
    return message.id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mail(api: Api) -> dict[str, Any]:
    ann = await api.user("ann@pairs.test")
    bob = await api.user("bob@pairs.test")
    ids = {name: await deliver(api, ann, m["subject"], m["text"]) for name, m in MAIL.items()}
    await deliver(api, bob, "Weekly sync", "the quick brown fox")  # not ann's
    return {"ann": ann, "ids": ids}


class _PlainTsQuery(_TsQuery):
    """PostgreSQL's engine without the pair index: the plain ``<->`` check, as before 0015."""

    def variant(self, node: Node) -> str:
        return "full" if (chosen := super().variant(node)) == "pairs" else chosen


async def ordered(search: SqlSearch, user_id: str, q: str) -> list[str]:
    found = await search.search(SearchRequest(user_id, parse(q), 50))
    return [hit.message.id for hit in found]


@pytest.mark.parametrize(("q", "expected"), PHRASES)
async def test_phrases_find_what_the_plain_phrase_check_finds_in_the_same_order(
    api: Api, mail: dict[str, Any], q: str, expected: set[str]
) -> None:
    user_id = mail["ann"].user.id
    with_pairs = await ordered(postgres_search(api.store.db), user_id, q)
    plain = await ordered(SqlSearch(api.store.db, _PlainTsQuery(), "plain"), user_id, q)
    by_id = {v: k for k, v in mail["ids"].items()}
    assert {by_id[i] for i in with_pairs} == expected
    assert with_pairs == plain


async def test_past_the_position_cap_pairs_follow_the_tsvector(
    api: Api, mail: dict[str, Any]
) -> None:
    """The token at position 16382 is next to every token past the cap, "yak" included."""
    async with api.store.db.session() as session:
        before_cap = (
            await session.execute(
                text(
                    "SELECT u.lexeme FROM search_documents d JOIN messages m "
                    "ON m.blob_key = d.blob_key, unnest(d.search_fts) u "
                    "WHERE m.id = :id AND 16382 = ANY(u.positions)"
                ),
                {"id": mail["ids"]["long"]},
            )
        ).scalar_one()
    user_id = mail["ann"].user.id
    q = f'"{before_cap} yak"'
    with_pairs = await ordered(postgres_search(api.store.db), user_id, q)
    assert with_pairs == [mail["ids"]["long"]]
    assert with_pairs == await ordered(
        SqlSearch(api.store.db, _PlainTsQuery(), "plain"), user_id, q
    )


async def pair_mismatches(db: Database) -> tuple[int, int, list[int]]:
    """(documents, pair rows, ids whose pairs differ from the adjacent lexemes of search_fts).

    The expected pairs are worked out here, from ``unnest(search_fts)``, not by the
    migration's SQL function.
    """
    async with db.session() as session:
        lexemes = await session.execute(
            text(
                "SELECT d.id, u.lexeme, u.positions FROM search_documents d, unnest(d.search_fts) u"
            )
        )
        at: dict[int, dict[int, set[str]]] = {}
        for doc, lexeme, positions in lexemes:
            for position in positions:
                at.setdefault(doc, {}).setdefault(position, set()).add(lexeme)
        documents = (await session.execute(text("SELECT id FROM search_documents"))).scalars()
        stored = {
            doc: set(pairs)
            for doc, pairs in await session.execute(
                text("SELECT id, tsvector_to_array(vector) FROM search_fts_pairs")
            )
        }
    expected: dict[int, set[str]] = {doc: set() for doc in documents}
    for doc, positions in at.items():
        size = 0
        for position, firsts in positions.items():
            for first in firsts:
                for second in positions.get(position + 1, ()):
                    pair = f"{first} {second}"
                    if len(pair.encode()) > MAX_LEXEME_BYTES:
                        pair = pair[:511]
                    expected[doc].add(pair)
                    size += len(pair.encode())
        if size > MAX_PAIR_BYTES:
            expected[doc] = {"!"}
    differing = sorted(doc for doc in expected if stored.get(doc) != expected[doc])
    return len(expected), len(stored), differing


async def test_the_pair_table_holds_the_adjacent_pairs_after_every_write(
    api: Api, mail: dict[str, Any]
) -> None:
    total, rows, differing = await pair_mismatches(api.store.db)
    assert total == len(MAIL) + 1 and rows == total and differing == []
    async with api.store.db.session() as session:
        huge = await session.execute(
            text(
                "SELECT p.vector::text FROM search_fts_pairs p JOIN messages m "
                "ON m.blob_key = p.blob_key WHERE m.id = :id"
            ),
            {"id": mail["ids"]["huge"]},
        )
    assert huge.scalar_one() == "'!'"
    ann = mail["ann"].user.id
    fox = mail["ids"]["fox"]
    async with transaction(api.store) as session:  # an edit of the text: the pairs follow
        await session.execute(
            text(
                "UPDATE search_documents SET body = 'slow green turtle' WHERE blob_key = "
                "(SELECT blob_key FROM messages WHERE id = :id)"
            ),
            {"id": fox},
        )
    assert await pair_mismatches(api.store.db) == (total, total, [])
    search = postgres_search(api.store.db)
    assert await ordered(search, ann, '"green turtle"') == [fox]
    assert await ordered(search, ann, '"quick brown"') == []
    async with transaction(api.store) as session:  # a reindex puts the text back
        await index_stored(session, await _blob_key(session, fox))
    assert await pair_mismatches(api.store.db) == (total, total, [])
    assert await ordered(search, ann, '"green turtle"') == []
    assert await ordered(search, ann, '"quick brown"') == [fox]
    async with transaction(api.store) as session:  # a document removed takes its pairs along
        await session.execute(
            text(
                "DELETE FROM search_documents WHERE blob_key = "
                "(SELECT blob_key FROM messages WHERE id = :id)"
            ),
            {"id": mail["ids"]["apart"]},
        )
    assert await pair_mismatches(api.store.db) == (total - 1, total - 1, [])
    async with transaction(api.store) as session:
        await index_stored(session, await _blob_key(session, mail["ids"]["apart"]))
    assert await pair_mismatches(api.store.db) == (total, total, [])


async def _blob_key(session: Any, message_id: str) -> str:
    found = await session.execute(
        text("SELECT blob_key FROM messages WHERE id = :id"), {"id": message_id}
    )
    key: str = found.scalar_one()
    return key


async def _pair_objects(db: Database) -> tuple[Any, ...]:
    async with db.session() as session:
        row = await session.execute(
            text(
                "SELECT to_regclass('search_fts_pairs'), "
                "to_regprocedure('search_fts_pairs_of(tsvector)'), "
                "(SELECT count(*) FROM pg_trigger WHERE tgname = 'search_fts_pairs_sync')"
            )
        )
        return tuple(row.one())


@pytest.fixture
def own_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


async def test_migration_0015_fills_the_pairs_of_existing_mail_and_downgrades(
    own_url: str, tmp_path: Path
) -> None:
    async with api_for(own_url, tmp_path) as api:
        ann = await api.user("ann@pairs.test")
        ids = [await deliver(api, ann, m["subject"], m["text"]) for m in MAIL.values()]
        config = alembic_config(own_url)
        await asyncio.to_thread(command.downgrade, config, "0014")
        assert await _pair_objects(api.store.db) == (None, None, 0)
        await asyncio.to_thread(migrate, own_url)  # the documents exist before the table
        assert await pair_mismatches(api.store.db) == (len(MAIL), len(MAIL), [])
        search = postgres_search(api.store.db)
        assert await ordered(search, ann.user.id, '"quick brown fox"') == [ids[3]]
        assert await _pair_objects(api.store.db) == (
            "search_fts_pairs",
            "search_fts_pairs_of(tsvector)",
            1,
        )
        await asyncio.to_thread(command.downgrade, config, "0014")
        assert await _pair_objects(api.store.db) == (None, None, 0)
        await asyncio.to_thread(migrate, own_url)
        assert await pair_mismatches(api.store.db) == (len(MAIL), len(MAIL), [])
