"""Search latency on SQLite FTS5 and PostgreSQL tsvector, against the raw engine as ceiling.

    .venv/bin/python -m bench.search.run                      # 100 000 messages, both engines
    .venv/bin/python -m bench.search.run --messages 10000 --databases sqlite   # a quick check

A generated corpus (``corpus.py``) is bulk-loaded into a fresh database per engine. Then, for
each operator family, the same queries run two ways, interleaved: through postroom's search
service (parse, backend SQL, rows, highlighted snippets: everything the API does short of
HTTP) and as hand-written SQL sent straight to the engine (an FTS5 ``MATCH`` or a tsvector
``@@``, user-scoped, the newest ``RANKED_WINDOW`` matches ranked, same page size: the best
engine SQL for the same result, see ``_raw_sql``), the ceiling. Targets: p95 under 50 ms, and
postroom at least 0.5x the raw engine (raw p50 / postroom p50).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from bench.search.corpus import CJK, COMMON, LAST, Corpus, build_corpus, load_corpus
from bench.support import _database_url, markdown_table, note, write_result
from bench.targets import Target, write_targets
from postroom.settings import Settings
from search.registry import open_search
from search.service import search_messages
from search.sql_query import RANKED_WINDOW
from search.text import query_tokens
from storage.db.models import Mailbox, User
from storage.registry import open_storage
from storage.schema import migrate

TARGET_P95_MS = 50.0
TARGET_RATIO = 0.5
GIN_INDEXES = {
    "search_fts_gin": "search_documents USING gin (search_fts)",
    "search_fts_headers_gin": "search_fts_headers USING gin (vector)",
    "search_fts_pairs_gin": "search_fts_pairs USING gin (vector)",
}
# What postroom's PostgreSQL search sets for its own statements (search/postgres_fts.py); the
# raw query gets the same, so the ceiling is planned as well as postroom's search is.
PG_SETTLE = (
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
    "set_config('max_parallel_workers_per_gather', '0', true)"
)
PAGE = 21  # the service asks for one more than the page of 20, to know if there is more


@dataclass
class Query:
    family: str
    user: str
    q: str
    fts5: str | None
    tsquery: str | None
    where: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    headers: bool = False
    """Only header fields named: on PostgreSQL an expert reads the narrow header table."""
    pairs: str | None = None
    """A phrase's adjacent word pairs: on PostgreSQL an expert also asks the pair index."""


def _fts(tokens: Sequence[str], column: str | None = None) -> str:
    phrase = '"' + " ".join(tokens) + '"'
    return f"{{{column}}} : {phrase}" if column else phrase


def _tsq(tokens: Sequence[str], weight: str = "") -> str:
    return " <-> ".join(f"'{t}'" + (f":{weight}" if weight else "") for t in tokens)


def _pairs(tokens: Sequence[str]) -> str | None:
    """``('a b' & 'b c') | '!'`` for a phrase (``search_fts_pairs``, migration 0015: ``'!'``
    marks a document whose pairs were too many to store); None for a single word."""
    pairs = [f"'{a} {b}'" for a, b in pairwise(tokens)]
    return "(" + " & ".join(pairs) + ") | '!'" if pairs else None


def make_queries(corpus: Corpus, per_family: int, seed: int = 11) -> list[Query]:
    rng = random.Random(seed)
    mid = corpus.vocabulary[len(COMMON) + 40 : len(COMMON) + 3000]
    out: list[Query] = []
    after = datetime.now(UTC) - timedelta(days=365)
    for _ in range(per_family):
        user = rng.choice(corpus.users)
        w1, w2 = rng.sample(mid, 2)
        common = rng.choice(COMMON[:20])
        a, b = rng.choice(corpus.pairs)
        last = rng.choice(LAST)
        cjk = rng.choice([w for words in CJK.values() for w in words if len(w) <= 4])
        cjk_tokens = query_tokens(cjk).tokens
        out += [
            Query("word", user, w1, _fts([w1]), _tsq([w1])),
            Query("common word", user, common, _fts([common]), _tsq([common])),
            Query(
                "two words",
                user,
                f"{w1} {w2}",
                f"{_fts([w1])} AND {_fts([w2])}",
                f"{_tsq([w1])} & {_tsq([w2])}",
            ),
            Query("phrase", user, f'"{a} {b}"', _fts([a, b]), _tsq([a, b]), pairs=_pairs([a, b])),
            Query(
                "from:",
                user,
                f"from:{last}",
                _fts([last], "sender"),
                _tsq([last], "B"),
                headers=True,
            ),
            Query(
                "subject:",
                user,
                f"subject:{w1}",
                _fts([w1], "subject"),
                _tsq([w1], "A"),
                headers=True,
            ),
            Query(
                "OR",
                user,
                f"{w1} OR {w2}",
                f"{_fts([w1])} OR {_fts([w2])}",
                f"{_tsq([w1])} | {_tsq([w2])}",
            ),
            Query(
                "negation",
                user,
                f"{w1} -{common}",
                f"{_fts([w1])} NOT {_fts([common])}",
                f"{_tsq([w1])} & !{_tsq([common])}",
            ),
            Query(
                "is: in: + word",
                user,
                f"{common} is:unread in:inbox",
                _fts([common]),
                _tsq([common]),
                "m.seen = false AND m.mailbox_id = :box",
            ),
            Query(
                "date, size + word",
                user,
                f"{w1} newer_than:365d larger:2K",
                _fts([w1]),
                _tsq([w1]),
                "m.received_at >= :after AND m.size > :size",
                {"after": after.replace(tzinfo=None), "size": 2048},
            ),
            Query(
                "filters only",
                user,
                "is:flagged has:attachment",
                None,
                None,
                "m.flagged = true AND m.has_attachments = true",
            ),
            Query("CJK", user, cjk, _fts(cjk_tokens), _tsq(cjk_tokens), pairs=_pairs(cjk_tokens)),
        ]
    return out


def _raw_sql(dialect: str, query: Query) -> str:
    """The best hand-written engine SQL for the same first page as postroom's.

    Same result: the user's matches, the newest ``RANKED_WINDOW`` of them ranked (newest by
    FTS5 rowid on SQLite, by ``received_at`` on PostgreSQL, as ``search/README.md`` says),
    best first, ties newest first, one page. Written the way the engine is fastest at it: the
    walk cut off early, the score computed only for the window, the message rows read only
    for the page; on PostgreSQL a header-only query reads the narrow header table
    (``search_fts_headers``), a phrase also needs its word pairs in ``search_fts_pairs``
    (whose GIN index has what the tsvector's lacks: adjacency), and every query runs with
    postroom's planner settings.
    """
    where = f" AND {query.where}" if query.where else ""
    if query.fts5 is None:
        return (
            f"SELECT m.* FROM messages m WHERE m.user_id = :user{where} "
            f"ORDER BY m.received_at DESC, m.id DESC LIMIT {PAGE}"
        )
    if dialect == "sqlite":
        window = (
            "SELECT m.id, m.received_at, bm25(search_fts, 8.0, 4.0, 2.0, 2.0, 1.0, 2.0) AS score "
            "FROM search_fts JOIN search_documents d ON d.id = search_fts.rowid "
            "JOIN messages m ON m.blob_key = d.blob_key "
            f"WHERE search_fts MATCH :match AND m.user_id = :user{where} "
            f"ORDER BY search_fts.rowid DESC LIMIT {RANKED_WINDOW}"
        )
        score = "score"
    else:
        source, vector = (
            ("search_fts_headers", "vector")
            if query.headers
            else (
                "search_documents",
                "search_fts",
            )
        )
        pairs = (
            "JOIN search_fts_pairs pr ON pr.blob_key = m.blob_key "
            "AND pr.vector @@ CAST(:pairs AS tsquery) "
            if query.pairs
            else ""
        )
        window = (
            f"SELECT m.id, m.received_at, d.{vector} AS vector FROM messages m "
            f"JOIN {source} d ON d.blob_key = m.blob_key {pairs}"
            f"WHERE m.user_id = :user AND d.{vector} @@ CAST(:match AS tsquery){where} "
            f"ORDER BY m.received_at DESC, m.id DESC LIMIT {RANKED_WINDOW}"
        )
        score = "-ts_rank(vector, CAST(:match AS tsquery))"
    return (
        f"WITH w AS ({window}) SELECT m.* FROM (SELECT id, received_at, {score} AS score FROM w "
        f"ORDER BY score, received_at DESC, id DESC LIMIT {PAGE}) p JOIN messages m ON m.id = p.id "
        "ORDER BY p.score, p.received_at DESC, p.id DESC"
    )


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


async def measure(
    url: str, data_dir: Path, corpus: Corpus, queries: list[Query], rounds: int
) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[int]]]:
    settings = Settings(data_dir=data_dir, database_url=url)
    store = open_storage(settings)
    backend = open_search(store)
    dialect = store.db.engine.dialect.name
    results: dict[str, dict[str, list[float]]] = {}
    hits: dict[str, list[int]] = {}
    try:
        async with store.db.session() as session:
            users: dict[str, str] = {
                address: user_id
                for address, user_id in await session.execute(select(User.address, User.id))
            }
            inbox_rows = await session.execute(
                select(Mailbox.user_id, Mailbox.id).where(Mailbox.role == "inbox")
            )
            inboxes: dict[str, str] = {user_id: box_id for user_id, box_id in inbox_rows}

        async def postroom(query: Query) -> int:
            page = await search_messages(store, backend, users[query.user], query.q, limit=20)
            return len(page.items)

        async def raw(query: Query) -> int:
            params = {
                "user": users[query.user],
                "match": query.fts5 if dialect == "sqlite" else query.tsquery,
                "box": inboxes[users[query.user]],
                "pairs": query.pairs,
                **query.params,
            }
            async with store.db.session() as session:
                if dialect == "postgresql":  # a plan for these words, as postroom's search gets
                    await session.execute(text(PG_SETTLE))
                rows = (await session.execute(text(_raw_sql(dialect, query)), params)).all()
            return len(rows)

        for query in queries[: len(queries) // 4]:  # warm caches and plans
            await postroom(query)
            await raw(query)
        for round_ in range(rounds):
            for query in queries:
                family = results.setdefault(query.family, {"postroom": [], "raw": []})
                for name, run in (("postroom", postroom), ("raw", raw))[:: 1 if round_ % 2 else -1]:
                    began = time.perf_counter()
                    found = await run(query)
                    family[name].append(time.perf_counter() - began)
                    if name == "postroom":
                        hits.setdefault(query.family, []).append(found)
    finally:
        await backend.close()
        await store.close()
    return results, hits


async def _load(url: str, corpus: Corpus, messages: list[Any]) -> float:
    settings = Settings(database_url=url)
    store = open_storage(settings)
    began = time.perf_counter()
    postgresql = store.db.engine.dialect.name == "postgresql"
    try:
        if postgresql:  # building the GIN indexes once beats updating them 100 000 times
            async with store.db.engine.begin() as connection:
                for name in GIN_INDEXES:
                    await connection.execute(text(f"DROP INDEX {name}"))
        await load_corpus(store.db, corpus, messages)
        if postgresql:
            async with store.db.engine.begin() as connection:
                for name, definition in GIN_INDEXES.items():
                    await connection.execute(text(f"CREATE INDEX {name} ON {definition}"))
        # What autovacuum leaves behind on a table that has settled: statistics and, on
        # PostgreSQL, the visibility map that lets index-only scans skip the heap.
        async with store.db.engine.connect() as connection:
            if postgresql:
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.execute(text("VACUUM ANALYZE"))
            else:
                await connection.execute(text("ANALYZE"))
                await connection.commit()
    finally:
        await store.close()
    return time.perf_counter() - began


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search.run", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--queries", type=int, default=12, help="distinct queries per family")
    parser.add_argument("--rounds", type=int, default=3, help="times each query runs")
    parser.add_argument(
        "--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    note(f"generating {args.messages} messages for {args.users} users")
    began = time.perf_counter()
    corpus, messages = build_corpus(args.messages, args.users)
    note(f"generated in {time.perf_counter() - began:.0f} s")
    queries = make_queries(corpus, args.queries)
    sections: list[str] = []
    verdicts: list[str] = []
    measured: list[Target] = []
    for kind in args.databases:
        with tempfile.TemporaryDirectory(prefix="postroom-bench-search-") as folder:
            with _database_url(kind, Path(folder)) as url:
                migrate(url)
                note(f"{kind}: loading")
                took = asyncio.run(_load(url, corpus, messages))
                note(f"{kind}: loaded in {took:.0f} s; measuring")
                results, hits = asyncio.run(
                    measure(url, Path(folder), corpus, queries, args.rounds)
                )
        rows = []
        for family, samples in results.items():
            p50, p95 = _ms(samples["postroom"])
            r50, r95 = _ms(samples["raw"])
            example = next(q.q for q in queries if q.family == family)
            ratio = r50 / p50 if p50 else 0.0
            rows.append(
                [
                    family,
                    f"`{example}`",
                    f"{statistics.mean(hits[family]):.1f}",
                    f"{p50:.1f}",
                    f"{p95:.1f}",
                    f"{r50:.1f}",
                    f"{r95:.1f}",
                    f"{ratio:.2f}x",
                ]
            )
            measured += [
                Target(
                    6,
                    "search",
                    f"{kind}: {family} p95",
                    f"{p95:.1f} ms",
                    f"< {TARGET_P95_MS:.0f} ms",
                    p95 < TARGET_P95_MS,
                ),
                Target(
                    6,
                    "search",
                    f"{kind}: {family} vs raw engine (p50)",
                    f"{ratio:.2f}x",
                    f"≥ {TARGET_RATIO}x",
                    ratio >= TARGET_RATIO,
                ),
            ]
            if p95 >= TARGET_P95_MS or ratio < TARGET_RATIO:
                verdicts.append(f"{kind} {family}: p95 {p95:.1f} ms, {ratio:.2f}x raw")
        sections.append(
            f"### {kind} ({took:.0f} s to load)\n\n"
            + markdown_table(
                [
                    "family",
                    "example",
                    "hits/page",
                    "p50 ms",
                    "p95 ms",
                    "raw p50",
                    "raw p95",
                    "vs raw",
                ],
                rows,
                right=2,
            )
        )
    load_after = os.getloadavg()[0]
    summary = (
        "## search\n\n"
        f"{args.messages} generated messages, {args.users} users, {args.queries} queries per "
        f"family x {args.rounds} rounds, page of 20. postroom = `search.service.search_messages` "
        "(parse, backend SQL, rows, snippets); raw = hand-written engine SQL, same scope and page. "
        f"'vs raw' = raw p50 / postroom p50 (target >= {TARGET_RATIO}x); target p95 < "
        f"{TARGET_P95_MS:.0f} ms. Load average {load_before:.1f} before, {load_after:.1f} after "
        f"(2 cores shared).\n\n"
        + "\n".join(sections)
        + "\n"
        + (
            "Missed targets: " + "; ".join(verdicts) + ".\n"
            if verdicts
            else "Every family met both targets.\n"
        )
    )
    print(summary)
    write_result("search", summary)
    write_targets("search", measured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
