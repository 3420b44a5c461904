"""``db.lone``: one-row reads that skip the session, with the same values and freshness.

The token check reads through it on every API request, so it must see a commit from anywhere
at once (a revoked key fails its next request) and give back exactly what SQLAlchemy would.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import DBAPIError

from postroom.errors import StorageError
from storage.db.lone_read import AsyncpgRead, EngineRead, SqliteRead
from storage.db.models import Domain, User
from storage.registry import Storage, open_database
from storage.repositories.accounts import add_domain, add_user
from tests.support.services import POSTGRES_ADMIN_URL

ONLY_POSTGRESQL = pytest.mark.parametrize("own_database_url", ["postgresql"], indirect=True)
ONLY_SQLITE = pytest.mark.parametrize("own_database_url", ["sqlite"], indirect=True)
"""For the tests of one engine's reader: ``store`` is built on that engine alone."""

BY_ADDRESS = select(User.id, User.is_admin, User.change_seq, User.created_at).where(
    User.address == bindparam("address")
)


async def _ann(store: Storage) -> User:
    async with store.db.session() as session, session.begin():
        await add_domain(session, "lone.test")
        return await add_user(session, "ann@lone.test", "a long password", is_admin=True)


async def test_the_row_is_what_a_session_reads(store: Storage) -> None:
    ann = await _ann(store)
    row = await store.db.lone.first(BY_ADDRESS, {"address": "ann@lone.test"})
    async with store.db.reader() as reader:
        expected = (await reader.execute(BY_ADDRESS, {"address": "ann@lone.test"})).one()
    assert row == dict(expected._mapping)
    assert row["id"] == ann.id
    assert row["is_admin"] is True  # SQLite stores 1: converted as the column type does
    created = row["created_at"]
    assert isinstance(created, datetime) and created.tzinfo == UTC
    assert await store.db.lone.first(BY_ADDRESS, {"address": "nobody@lone.test"}) is None


async def test_every_row_is_what_a_session_reads(store: Storage) -> None:
    await _ann(store)
    async with store.db.session() as session, session.begin():
        for name in ("bob", "carl"):
            await add_user(session, f"{name}@lone.test", "a long password")
    everyone = select(User.address, User.is_admin, User.created_at).order_by(User.address)

    rows = await store.db.lone.all(everyone, {})

    async with store.db.reader() as reader:
        expected = [dict(row._mapping) for row in await reader.execute(everyone)]
    assert rows == expected
    assert [row["address"] for row in rows] == ["ann@lone.test", "bob@lone.test", "carl@lone.test"]
    none = everyone.where(User.address == bindparam("address"))
    assert await store.db.lone.all(none, {"address": "nobody@lone.test"}) == []


async def test_a_commit_is_seen_by_the_next_read(store: Storage) -> None:
    ann = await _ann(store)
    assert (await store.db.lone.first(BY_ADDRESS, {"address": ann.address}))["change_seq"] == 0
    async with store.db.session() as session, session.begin():
        await session.execute(update(User).where(User.id == ann.id).values(change_seq=7))
    assert (await store.db.lone.first(BY_ADDRESS, {"address": ann.address}))["change_seq"] == 7


async def test_each_engine_gets_its_cheapest_read(store: Storage) -> None:
    expected = SqliteRead if store.db.engine.dialect.name == "sqlite" else AsyncpgRead
    assert isinstance(store.db.lone, expected)


async def test_an_in_memory_sqlite_database_reads_through_the_engine() -> None:
    """A second connection to ``:memory:`` would be another, empty database."""
    db = open_database("sqlite+aiosqlite:///:memory:")
    try:
        assert isinstance(db.lone, EngineRead)
    finally:
        await db.close()


@ONLY_POSTGRESQL
async def test_after_postgresql_drops_its_connections_a_read_recovers(store: Storage) -> None:
    """A dead pooled connection fails over to SQLAlchemy, which refreshes the pool: at most
    one read fails (a DBAPIError, the API's 503), the next one answers."""
    assert isinstance(store.db.lone, AsyncpgRead)
    ann = await _ann(store)
    assert await store.db.lone.first(BY_ADDRESS, {"address": ann.address}) is not None
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            store.db.engine.url.database,
        )
    finally:
        await admin.close()
    with contextlib.suppress(DBAPIError):
        await store.db.lone.first(BY_ADDRESS, {"address": ann.address})
    row = await store.db.lone.first(BY_ADDRESS, {"address": ann.address})
    assert row is not None and row["id"] == ann.id


@ONLY_SQLITE
async def test_the_sqlite_connection_cannot_write(store: Storage) -> None:
    assert isinstance(store.db.lone, SqliteRead)
    await _ann(store)
    await store.db.lone.first(BY_ADDRESS, {"address": "ann@lone.test"})  # opens it
    connection = store.db.lone._connection
    assert connection is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await connection.execute("DELETE FROM domains")
    async with store.db.reader() as reader:
        assert (await reader.scalars(select(Domain.name))).all() == ["lone.test"]


@ONLY_SQLITE
async def test_a_sqlite_failure_is_a_storage_error(store: Storage) -> None:
    """StorageError is the API's 503 "try again", never a 500."""
    assert isinstance(store.db.lone, SqliteRead)
    broken = SqliteRead(store.db.lone.path + ".missing-dir/x.db", store.db.engine.dialect)
    with pytest.raises(StorageError, match="try again"):
        await broken.first(BY_ADDRESS, {"address": "ann@lone.test"})
    await broken.close()


@ONLY_POSTGRESQL
async def test_a_read_cancelled_midway_leaves_the_pool_usable(store: Storage) -> None:
    """A client that hangs up cancels its request: the connection is not reused half-read."""
    assert isinstance(store.db.lone, AsyncpgRead)
    ann = await _ann(store)
    slow = select(func.pg_sleep(5).label("slept"))
    reading = asyncio.create_task(store.db.lone.first(slow, {}))
    await asyncio.sleep(0.3)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    for _ in range(12):  # more than the pool holds: every connection is fit to use
        row = await asyncio.wait_for(
            store.db.lone.first(BY_ADDRESS, {"address": ann.address}), timeout=2
        )
        assert row is not None and row["id"] == ann.id
