"""GET /api/v1/search: one suite of queries, run against every search backend available.

SQLite FTS5 and PostgreSQL tsvector always; OpenSearch when POSTROOM_TEST_OPENSEARCH_URL names
a live server (it cannot run on these machines). Mail is filed as the processor files it, and
flags, moves and deletes go through the API, so the index is seen following real changes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text, update

from search import sql_query
from search.documents import index_stored
from search.postgres_fts import postgres_search
from smtp_in.processor import process_inbound
from storage.db.models import Message
from storage.repositories import inbound
from storage.repositories.mail import register_blob
from storage.transaction import transaction
from tests.support.gateway_api import Api, Client, api_for, compose
from tests.support.services import postgres_database

pytestmark = pytest.mark.asyncio(loop_scope="module")

BACKENDS = ["sqlite", "postgresql", "opensearch"]


@pytest.fixture(params=BACKENDS, scope="module")
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(database URL, extra settings) for one backend."""
    if request.param == "postgresql":
        with postgres_database() as url:
            yield url, {}
        return
    folder = tmp_path_factory.mktemp("search")
    url = f"sqlite+aiosqlite:///{folder / 'postroom.db'}"
    if request.param == "opensearch":
        server = os.environ.get("POSTROOM_TEST_OPENSEARCH_URL")
        if not server:
            pytest.skip("set POSTROOM_TEST_OPENSEARCH_URL to test against a live OpenSearch")
        yield url, {"search_url": server}
        return
    yield url, {}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(
    backend: tuple[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    url, settings = backend
    async with api_for(url, Path(tmp_path_factory.mktemp("search-api")), **settings) as api:
        yield api
        if (engine := getattr(api.app.state, "search", None)) is not None:
            await engine.close()


async def deliver(api: Api, client: Client, raw: bytes, **kwargs: Any) -> Message:
    """File and index ``raw`` in one transaction's wake, as the processor does."""
    message = await api.deliver(client.user, raw, **kwargs)
    async with transaction(api.store) as session:
        await index_stored(session, message.blob_key)
    return message


MAIL: dict[str, dict[str, Any]] = {
    "report": dict(
        subject="Quarterly report",
        sender="Carol Jones <carol@corp.test>",
        text="Please find the quarterly report attached. Revenue grew nicely.",
        attachments=[("report-q3.pdf", "application/pdf", b"%PDF-1.4 numbers")],
    ),
    "lunch": dict(
        subject="Lunch plans",
        sender="bob@find.test",
        text="Shall we get Lunch on Friday? <script>alert(1)</script> & more",
    ),
    "korean": dict(subject="가입 안내", sender="noreply@kr.test", text="회원가입 인증 메일입니다"),
    "japanese": dict(
        subject="会議のお知らせ", sender="info@jp.test", text="明日の会議は東京で行います。"
    ),
    "chinese": dict(subject="欢迎", sender="hello@cn.test", text="欢迎使用我们的服务"),
    "resume": dict(subject="Résumé attached", sender="eve@jobs.test", text="My résumé, as asked."),
    "sync": dict(
        subject="Weekly sync notes", sender="dave@corp.test", text="Notes of the weekly sync."
    ),
    "big": dict(
        subject="Big upload",
        sender="dave@corp.test",
        text="Some notes and the big file. " + "padding words here " * 40,
        attachments=[("data.bin", "application/octet-stream", b"\0" * 30_000)],
    ),
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mail(api: Api) -> dict[str, Any]:
    """ann's mailbox (one message per MAIL entry) plus bob, who has quarterly mail of his own."""
    ann = await api.user("ann@find.test")
    bob = await api.user("bob@find.test")
    ids: dict[str, str] = {}
    for name, spec in MAIL.items():
        spec = dict(spec)
        cc = "Dave <dave@corp.test>" if name == "report" else None
        raw = compose(spec.pop("subject"), sender=spec.pop("sender"), to="ann@find.test", **spec)
        if cc:
            raw = raw.replace(b"To: ann@find.test", b"To: ann@find.test\nCc: " + cc.encode())
        ids[name] = (await deliver(api, ann, raw)).id
    await deliver(api, bob, compose("Quarterly report", text="bob's own quarterly revenue"))
    async with transaction(api.store) as session:  # the résumé came in long ago
        await session.execute(
            update(Message)
            .where(Message.id == ids["resume"])
            .values(received_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    return {"ann": ann, "bob": bob, "ids": ids}


async def find(client: Client, q: str, **params: Any) -> list[dict[str, Any]]:
    answer = await client.get("/search", params={"q": q, **params})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def names(mail: dict[str, Any], q: str, client: str = "ann") -> set[str]:
    by_id = {v: k for k, v in mail["ids"].items()}
    return {by_id.get(item["id"], item["subject"]) for item in await find(mail[client], q)}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("quarterly revenue", {"report"}),
        ("REVENUE quarterly", {"report"}),
        ('"weekly sync"', {"sync"}),
        ('"sync weekly"', set()),
        ("from:carol", {"report"}),
        ("from:carol@corp.test", {"report"}),
        ('from:"carol jones"', {"report"}),
        ("to:dave", set()),
        ("to:ann lunch", {"lunch"}),
        ("to:ann@find.test subject:lunch", {"lunch"}),
        ("cc:dave", {"report"}),
        ("subject:lunch", {"lunch"}),
        ("subject:friday", set()),
        ("body:friday", {"lunch"}),
        ("filename:pdf", {"report"}),
        ("filename:report", {"report"}),
        ("has:attachment", {"report", "big"}),
        ("before:2021-01-01", {"resume"}),
        ("after:2021-01-01 attached", {"report"}),
        ("older_than:1y", {"resume"}),
        ("newer_than:2d notes", {"sync", "big"}),
        ("larger:20K", {"big"}),
        ("smaller:20K notes", {"sync"}),
        ("lunch OR résumé", {"lunch", "resume"}),
        ("notes -big", {"sync"}),
        ("-notes has:attachment", {"report"}),
        ("(lunch OR sync) -friday", {"sync"}),
        ("quarterly OR is:flagged", {"report"}),
        ("인증", {"korean"}),
        ("메일", {"korean"}),
        ("회원가입", {"korean"}),
        ("東京", {"japanese"}),
        ("会議", {"japanese"}),
        ("京", {"japanese"}),
        ("服务", {"chinese"}),
        ("欢迎", {"chinese"}),
        ("resume", {"resume"}),
        ("RÉSUMÉ", {"resume"}),
        ("subject:resume", {"resume"}),
        # Header fields only: PostgreSQL answers these from the header tsvector (0014).
        ('subject:"weekly sync"', {"sync"}),
        ('subject:"sync weekly"', set()),
        ("from:dave -subject:big", {"sync"}),
        ("subject:lunch OR from:carol", {"lunch", "report"}),
        ("from:dave subject:upload", {"big"}),
        ("from:dave has:attachment", {"big"}),
        ("from:dave -in:inbox", set()),
    ],
)
async def test_operators(mail: dict[str, Any], q: str, expected: set[str]) -> None:
    assert await names(mail, q) == expected


async def test_the_header_table_is_the_header_part_of_the_full_vector(
    backend: tuple[str, dict[str, Any]], api: Api, mail: dict[str, Any]
) -> None:
    """PostgreSQL answers header-only queries from ``search_fts_headers`` (migration 0014);
    that gives the same matches and ranks only while every document has its row there and its
    lexemes, weights and positions are exactly the header part of ``search_fts``, also after
    the document is rewritten (a reindex) or deleted."""
    if not backend[0].startswith("postgresql"):
        pytest.skip("the header table is PostgreSQL's")
    report = mail["ids"]["report"]

    async def differing() -> tuple[int, int, int]:
        async with api.store.db.session() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT count(*), count(h.id), count(*) FILTER (WHERE "
                        "ts_filter(d.search_fts, '{a,b,c}') <> h.vector) FROM search_documents d "
                        "LEFT JOIN search_fts_headers h ON h.id = d.id"
                    )
                )
            ).one()
        return row[0], row[1], row[2]

    total, headers, different = await differing()
    assert total >= len(MAIL) and headers == total and different == 0
    async with transaction(api.store) as session:
        await session.execute(
            text(
                "UPDATE search_documents SET subject = 'renamed quarterly' WHERE blob_key = "
                "(SELECT blob_key FROM messages WHERE id = :id)"
            ),
            {"id": report},
        )
    assert await differing() == (total, total, 0)
    assert await names(mail, "subject:renamed") == {"report"}
    async with transaction(api.store) as session:
        await index_stored(session, (await session.get(Message, report)).blob_key)  # type: ignore[union-attr]
    assert await names(mail, "subject:renamed") == set()
    assert await differing() == (total, total, 0)


async def test_postgresql_searches_plan_for_their_words_without_parallel_workers(
    backend: tuple[str, dict[str, Any]], api: Api
) -> None:
    """Generic plans cannot see the tsquery; parallel workers cost more than a search's walk."""
    if not backend[0].startswith("postgresql"):
        pytest.skip("PostgreSQL planner settings")
    engine = postgres_search(api.store.db).engine
    async with api.store.db.session() as session, session.begin():
        await engine.settle_plan(session)
        assert await session.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
        assert await session.scalar(text("SHOW max_parallel_workers_per_gather")) == "0"
    async with api.store.db.session() as session:  # local to the search's transaction
        assert await session.scalar(text("SHOW max_parallel_workers_per_gather")) != "0"


async def test_always_scoped_to_the_user(mail: dict[str, Any]) -> None:
    assert await names(mail, "quarterly") == {"report"}
    bobs = await find(mail["bob"], "quarterly")
    assert [(i["subject"], i["snippet"]) for i in bobs] == [
        ("Quarterly report", "bob's own quarterly revenue")
    ]
    assert await find(mail["bob"], "lunch") == []


async def test_items_are_list_items_with_escaped_highlights(mail: dict[str, Any]) -> None:
    [item] = await find(mail["ann"], "lunch")
    listed = (await mail["ann"].get("/messages", params={"limit": 200})).json()["items"]
    assert {k: v for k, v in item.items() if "highlight" not in k} in listed
    assert item["highlight"].startswith("Shall we get <mark>Lunch</mark> on Friday?")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in item["highlight"]
    assert "<script>" not in item["highlight"]
    assert item["subject_highlight"] == "<mark>Lunch</mark> plans"
    [korean] = await find(mail["ann"], "인증")
    assert korean["highlight"] == "회원가입 <mark>인증</mark> 메일입니다"
    [resume] = await find(mail["ann"], "resume")
    assert resume["highlight"] == "My <mark>résumé</mark>, as asked."


async def test_ranked_by_relevance_then_date(mail: dict[str, Any]) -> None:
    # "notes" is in the subject of the sync message, only in the body of the newer big one.
    assert [i["subject"] for i in await find(mail["ann"], "notes")] == [
        "Weekly sync notes",
        "Big upload",
    ]
    # Without words, all are equal: newest first, like the list.
    dated = [i["received_at"] for i in await find(mail["ann"], "has:attachment")]
    assert dated == sorted(dated, reverse=True)


async def test_only_the_newest_matches_are_ranked(
    backend: tuple[str, dict[str, Any]], mail: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    if "search_url" in backend[1]:
        pytest.skip("OpenSearch ranks every match; the window is the SQL engines' (README)")
    # "the" is in three bodies; with a window of two, the oldest (the report) comes after the
    # two newest whatever its score, and pages still cover every match exactly once.
    monkeypatch.setattr(sql_query, "RANKED_WINDOW", 2)
    found = [i["subject"] for i in await find(mail["ann"], "the")]
    assert sorted(found[:2]) == ["Big upload", "Weekly sync notes"]
    assert found[2:] == ["Quarterly report"]
    paged: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"q": "the", "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await mail["ann"].get("/search", params=params)).json()
        paged += [i["subject"] for i in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert paged == found


async def test_pages_follow_the_cursor(mail: dict[str, Any]) -> None:
    everything = [i["id"] for i in await find(mail["ann"], "-zzz")]
    assert len(everything) == len(MAIL)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"q": "-zzz", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await mail["ann"].get("/search", params=params)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything
    first = (await mail["ann"].get("/search", params={"q": "-zzz", "limit": 3})).json()
    other = await mail["ann"].get("/search", params={"q": "lunch", "cursor": first["next_cursor"]})
    assert other.status_code == 422
    assert other.json()["error"]["field"] == "cursor"


@pytest.mark.parametrize(
    ("q", "where"),
    [
        ("from:", "column 6"),
        ("(lunch OR sync", "column 1"),
        ("lunch)", "column 6"),
        ('subject:"never closed', "column 9"),
        ("lunch OR", "column 7"),
        ("is:maybe", "column 4"),
        ("before:yesterday", "column 8"),
        ("larger:big", "column 8"),
        ("colour:red", "column 1"),
        ("in:nowhere", "column 1"),
        ("   ", "type something"),
    ],
)
async def test_malformed_queries_say_where(mail: dict[str, Any], q: str, where: str) -> None:
    answer = await mail["ann"].get("/search", params={"q": q})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["field"] == "q"
    assert where in error["message"]


async def test_the_index_follows_flags_moves_and_deletes(api: Api, mail: dict[str, Any]) -> None:
    ann = mail["ann"]
    sync = mail["ids"]["sync"]
    assert await names(mail, "is:flagged") == set()
    patched = await ann.request("PATCH", f"/messages/{sync}", json={"seen": True, "flagged": True})
    assert patched.status_code == 200
    assert await names(mail, "is:flagged") == {"sync"}
    assert "sync" in await names(mail, "is:read")
    assert "sync" not in await names(mail, "is:unread notes")

    assert (await ann.post(f"/messages/{sync}/move", json={"mailbox": "archive"})).is_success
    assert await names(mail, "in:archive") == {"sync"}
    assert await names(mail, "notes -in:archive") == {"big"}

    assert (await ann.request("DELETE", f"/messages/{sync}")).json()["outcome"] == "trashed"
    assert await names(mail, "in:trash weekly") == {"sync"}
    assert (await ann.request("DELETE", f"/messages/{sync}")).json()["outcome"] == "deleted"
    assert await names(mail, "weekly") == set()


async def test_new_mail_is_found_once_the_processor_filed_it(
    api: Api, mail: dict[str, Any]
) -> None:
    raw = compose("Invoice 4471", sender="billing@shop.test", to="ann@find.test", text="Paid.")
    assert await names(mail, "invoice") == set()
    key = await api.store.blobs.put(raw)
    async with transaction(api.store) as session:
        await register_blob(session, key, len(raw))
        row = inbound.add_pending(
            session,
            blob_key=key,
            mail_from="billing@shop.test",
            rcpt_to=["ann@find.test"],
            source="mx",
        )
    await process_inbound(api.store, row.id)
    assert await names(mail, "invoice from:billing") == {"Invoice 4471"}
    assert await names(mail, "from:billing") == {"Invoice 4471"}  # headers only (0014)


async def test_sent_mail_is_found_in_sent(mail: dict[str, Any]) -> None:
    sent = await mail["ann"].post(
        "/send",
        json={"to": ["zed@elsewhere.test"], "subject": "Offsite agenda", "text": "Bring ideas."},
    )
    assert sent.status_code == 202, sent.text
    assert await names(mail, "in:sent agenda to:zed") == {"Offsite agenda"}
