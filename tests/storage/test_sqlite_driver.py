"""The SQLite engine's driver: one hand-off to the connection's thread per statement (fewer when
statements wait for the next one), with the same answers SQLAlchemy gets from plain aiosqlite;
and the writer lock's timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text
from sqlalchemy.exc import IntegrityError

from postroom.errors import StorageError
from storage.db import database
from storage.db.database import Database, open_sqlite
from storage.db.models import Domain
from storage.db.sqlite_driver import OneHopConnection, defer_inserts


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    opened = open_sqlite(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with opened.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_select_is_one_hand_off_and_gives_every_row(
    db: Database, hand_offs: list[str]
) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO t (name) VALUES (:name)"), [{"name": f"n{i}"} for i in range(150)]
        )
    async with db.engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")  # the connection's first use: settled
        hand_offs.clear()
        result = await connection.execute(text("SELECT id, name FROM t ORDER BY id"))
        rows = result.all()
        assert hand_offs == ["_run"]
    assert [tuple(row) for row in rows] == [(i + 1, f"n{i}") for i in range(150)]


async def test_a_write_transaction_is_a_hand_off_per_statement_and_one_to_commit(
    db: Database, hand_offs: list[str]
) -> None:
    async with db.session() as session:
        async with session.begin():
            await session.connection()
            hand_offs.clear()
            result = await session.execute(
                text("INSERT INTO t (name) VALUES (:name)"), [{"name": "a"}, {"name": "b"}]
            )
            single = await session.execute(text("INSERT INTO t (name) VALUES ('c')"))
            assert hand_offs == ["_run", "_run"]
        assert hand_offs == ["_run", "_run", "commit"]
    # going back to the pool with no transaction open asks the thread nothing
    assert hand_offs == ["_run", "_run", "commit"]
    assert result.rowcount == 2
    assert single.lastrowid == 3  # type: ignore[attr-defined]


async def test_begin_goes_with_the_first_statement_and_an_empty_transaction_costs_nothing(
    db: Database, hand_offs: list[str]
) -> None:
    async with db.session() as session:
        async with session.begin():
            connection = await session.connection()
            assert hand_offs == []  # BEGIN IMMEDIATE waits for a statement to go with
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert isinstance(driver, OneHopConnection)
            assert not driver._conn.in_transaction
            assert await session.scalar(text("SELECT count(*) FROM t")) == 0
            assert hand_offs == ["_run"]
            assert driver._conn.in_transaction  # it began, in that same hand-off
        assert hand_offs == ["_run", "commit"]
    hand_offs.clear()
    async with db.session() as session, session.begin():
        await session.connection()
    assert hand_offs == []


async def test_deferred_inserts_go_with_the_next_statement_that_answers_or_the_commit(
    db: Database, hand_offs: list[str]
) -> None:
    async with db.engine.connect() as connection:
        async with connection.begin():
            async with db.session(bind=connection) as session:
                await defer_inserts(session)
                await session.execute(text("INSERT INTO t (name) VALUES ('a')"))
                await session.execute(
                    text("INSERT INTO t (name) VALUES (:name)"), [{"name": "b"}, {"name": "c"}]
                )
                assert hand_offs == []
                # the inserts that waited ran first, in the same hand-off as the count
                assert await session.scalar(text("SELECT count(*) FROM t")) == 3
                assert hand_offs == ["_run"]
                await session.execute(text("INSERT INTO t (name) VALUES ('d')"))
                assert hand_offs == ["_run"]
        assert hand_offs == ["_run", "_commit"]
        # the next transaction on the same connection runs its inserts at once again
        async with connection.begin():
            await connection.execute(text("INSERT INTO t (name) VALUES ('e')"))
            assert hand_offs == ["_run", "_commit", "_run"]
    async with db.reader() as reader:
        names = (await reader.scalars(text("SELECT name FROM t ORDER BY id"))).all()
    assert names == ["a", "b", "c", "d", "e"]


async def test_a_deferred_insert_that_fails_fails_the_commit_and_nothing_is_kept(
    db: Database,
) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(text("INSERT INTO t (name) VALUES ('taken')"))
    with pytest.raises(IntegrityError, match="UNIQUE"):
        async with db.session() as session, session.begin():
            await defer_inserts(session)
            await session.execute(text("INSERT INTO t (name) VALUES ('other')"))
            await session.execute(text("INSERT INTO t (name) VALUES ('taken')"))
    async with db.session() as session, session.begin():  # the connection is usable again
        await defer_inserts(session)
        await session.execute(text("INSERT INTO t (name) VALUES ('later')"))
    async with db.reader() as reader:
        names = (await reader.scalars(text("SELECT name FROM t ORDER BY id"))).all()
    assert names == ["taken", "later"]


async def test_an_error_is_sqlalchemys_and_rolls_back(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(text("INSERT INTO t (name) VALUES ('taken')"))
    with pytest.raises(IntegrityError, match="UNIQUE"):
        async with db.session() as session, session.begin():
            await session.execute(text("INSERT INTO t (name) VALUES ('other')"))
            await session.execute(text("INSERT INTO t (name) VALUES ('taken')"))
    async with db.reader() as reader:
        names = (await reader.scalars(text("SELECT name FROM t"))).all()
    assert names == ["taken"]


async def test_the_orm_reads_and_writes_through_it(db: Database) -> None:
    async with db.engine.begin() as connection:
        await connection.run_sync(Domain.metadata.create_all, tables=[Domain.__table__])
    async with db.session() as session, session.begin():
        session.add_all([Domain(name="one.test"), Domain(name="two.test")])
    async with db.reader() as reader:
        found = (await reader.scalars(select(Domain.name).order_by(Domain.name))).all()
    assert found == ["one.test", "two.test"]


async def test_a_writer_waiting_past_the_timeout_gets_an_error_to_act_on(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "WRITE_LOCK_TIMEOUT", 0.2)
    async with db.session() as holder, holder.begin():
        await holder.execute(text("INSERT INTO t (name) VALUES ('held')"))
        with pytest.raises(StorageError, match="busy with other writes"):
            async with db.session() as waiter, waiter.begin():
                await waiter.execute(text("INSERT INTO t (name) VALUES ('late')"))
    async with db.session() as after, after.begin():  # the lock was not left taken
        await after.execute(text("INSERT INTO t (name) VALUES ('after')"))
    async with db.reader() as reader:
        names = (await reader.scalars(text("SELECT name FROM t ORDER BY id"))).all()
    assert names == ["held", "after"]


async def test_writers_queue_for_the_lock_in_turn(db: Database) -> None:
    order: list[int] = []

    async def write(n: int) -> None:
        async with db.session() as session, session.begin():
            await session.execute(text("INSERT INTO t (name) VALUES (:n)"), {"n": f"w{n}"})
            order.append(n)
            await asyncio.sleep(0)

    await asyncio.gather(*(write(n) for n in range(10)))
    assert sorted(order) == list(range(10))
    async with db.reader() as reader:
        assert await reader.scalar(text("SELECT count(*) FROM t")) == 10


async def test_many_rows_are_inserted_with_one_statement(db: Database) -> None:
    """Each statement is one step with the GIL given up and taken back; per row, that was the
    cost of a batch on a busy gateway."""
    statements: list[str] = []
    async with db.session() as session, session.begin():
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, OneHopConnection)
        await driver.set_trace_callback(statements.append)
        try:
            await session.execute(
                Table("t", MetaData(), Column("id", Integer), Column("name", String)).insert(),
                [{"name": f"m{i}"} for i in range(25)],
            )
        finally:
            await driver.set_trace_callback(None)
    assert len([s for s in statements if s.startswith("INSERT")]) == 1
    async with db.reader() as reader:
        assert await reader.scalar(text("SELECT count(*) FROM t")) == 25
