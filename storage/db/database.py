"""The metadata store: an async SQLAlchemy engine plus what differs between engines.

Everything engine-specific lives in the two ``open_*`` functions the registry calls, so the
repositories above never ask which database they run on.

Two kinds of session, so the write/read split is explicit: ``db.session()`` may write (on
SQLite its transaction takes the write lock up front), ``db.reader()`` only reads: each of its
statements runs on its own, without BEGIN/ROLLBACK around them (autocommit; on SQLite a WAL
read that never waits for writers), so several statements of one reader see committed data as
of each statement, as READ COMMITTED does; a flush in it is refused. Code that reads and then
decides to write uses ``db.session()`` from the start: upgrading a SQLite read to a write can
fail with SQLITE_BUSY, which is why readers never write.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.util import await_only

from postroom.errors import StorageError
from storage.db.lone_read import AsyncpgRead, EngineRead, LoneRead, SqliteRead
from storage.db.sqlite_driver import connector

__all__ = [
    "Database",
    "ReadSession",
    "insert_ignoring_duplicates",
    "insert_or_update",
    "open_postgresql",
    "open_sqlite",
]

_INSERTS: dict[str, Callable[[Any], Insert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


def dialect_insert(dialect: str, table: Any) -> Insert:
    """The engine's own ``INSERT`` on ``table``: the one with ``on_conflict_do_*``."""
    return _INSERTS[dialect](table)


def insert_ignoring_duplicates(session: AsyncSession, model: Any) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING``, which both engines spell the same way."""
    insert = _INSERTS[session.get_bind().dialect.name]
    statement: Insert = insert(model).on_conflict_do_nothing()  # type: ignore[attr-defined]
    return statement


def insert_or_update(
    session: AsyncSession, model: Any, values: dict[str, Any], *, key: list[str]
) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` setting ``values`` again: an atomic upsert.

    Both engines spell it the same way; a select-then-insert would race another writer into
    a unique violation that rolls back the caller's whole transaction.
    """
    insert = _INSERTS[session.get_bind().dialect.name]
    changed = {name: value for name, value in values.items() if name not in key}
    statement: Insert = insert(model).values(values)
    upsert: Insert = statement.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=key, set_=changed
    )
    return upsert


class ReadSession(Session):
    """A session that only reads: flushing a change in it is a bug, refused before any SQL."""


@event.listens_for(ReadSession, "before_flush")
def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a read-only session (db.reader()) cannot write; use db.session()")


_READ_ONLY = "postroom_read_only"
"""Execution option marking the SQLite engine behind ``db.reader()`` (no BEGIN, no lock)."""

IDLE_IN_TRANSACTION_SECONDS = 60
"""PostgreSQL ends a transaction left idle this long, releasing the locks it held."""

WRITE_LOCK_TIMEOUT = 30.0
"""Seconds a writer waits for the others of its process, like ``busy_timeout`` across them."""


class Database:
    """An engine and its two session factories: ``session`` (may write) and ``reader``."""

    def __init__(
        self, engine: AsyncEngine, *, reads: AsyncEngine | None = None, lone: LoneRead | None = None
    ) -> None:
        self.engine = engine
        self.session = async_sessionmaker(engine, expire_on_commit=False)
        self.reader = async_sessionmaker(
            reads or engine, expire_on_commit=False, sync_session_class=ReadSession
        )
        # One-row reads on every request (the token check), cheaper than a session: lone_read.py
        self.lone: LoneRead = lone or EngineRead(reads or engine)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    async def close(self) -> None:
        await self.lone.close()
        await self.engine.dispose()


class _WriterLock:
    """One SQLite writer at a time per process, queued on an asyncio lock.

    ``BEGIN IMMEDIATE`` alone makes concurrent writers of one process poll the file lock
    (SQLite's busy handler sleeps up to 100 ms between tries, each waiter holding a pooled
    connection); queueing them here hands the lock over the moment a writer commits. Other
    processes still meet at the file lock and ``busy_timeout``. The lock is taken when a write
    transaction begins and given back when its connection returns to the pool (after commit or
    rollback), so a connection never holds it idle.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._holders: dict[int, asyncio.Lock] = {}

    def acquire(self, record: Any) -> None:
        """Called inside SQLAlchemy's greenlet as a write transaction begins."""
        if id(record) in self._holders:
            return  # the same connection beginning again before it went back to the pool
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        try:
            await_only(_acquire(lock))
        except TimeoutError:
            raise StorageError(
                f"the database stayed busy with other writes for {WRITE_LOCK_TIMEOUT:.0f} s; "
                "try again"
            ) from None
        self._holders[id(record)] = lock

    def release(self, record: Any) -> None:
        lock = self._holders.pop(id(record), None)
        if lock is not None:
            lock.release()


async def _acquire(lock: asyncio.Lock) -> None:
    """``lock`` within :data:`WRITE_LOCK_TIMEOUT`; a free lock is taken without a turn of the
    event loop (``asyncio.wait_for`` would start a task for it: two turns, on every write)."""
    async with asyncio.timeout(WRITE_LOCK_TIMEOUT):
        await lock.acquire()


def open_sqlite(url: str) -> Database:
    """SQLite in WAL mode: readers take no lock; each write transaction takes it first.

    ``BEGIN IMMEDIATE`` makes a writer wait (behind the writers of its own process on an
    asyncio lock, then ``busy_timeout`` for other processes) instead of failing when another
    connection writes; ``synchronous=FULL`` makes a commit survive power loss, which is what
    our 250 promises. Readers (``db.reader()``) take no lock and, in WAL, never wait.
    """
    database = make_url(url).database
    on_disk = database if database and database != ":memory:" else None
    if on_disk:
        Path(on_disk).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        # one hand-off to the connection's thread per statement, not four: sqlite_driver.py
        async_creator=connector(database or ":memory:", timeout=30),
        # each connection has its own page cache, dropped when another one wrote: the last
        # connection back (the last writer, often) is the one whose cache is still good
        **({"pool_use_lifo": True} if on_disk else {}),
    )
    # An executemany INSERT as one multi-row INSERT (SQLAlchemy's "insertmanyvalues"), as it
    # already does with RETURNING: sqlite3 gives up the GIL around each row's step and must take
    # it back from a busy event loop every time (up to the 5 ms switch interval when the loop
    # runs Python). A batch of 25 sends' blob rows took 6.7 ms under load against 0.1 ms alone;
    # beside a thread running Python, 25 rows took 219 ms one by one and 10 ms as one statement.
    engine.sync_engine.dialect.use_insertmanyvalues_wo_returning = True
    writers = _WriterLock()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            "busy_timeout=30000",
            # 64 MiB of page cache (the default is 2 MiB): full-text searches over a large
            # mailbox read the same index pages again and again; measured 3x faster.
            "cache_size=-65536",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READ_ONLY):
            return  # no BEGIN: each read statement is its own (WAL snapshot) transaction
        record = connection.connection._connection_record
        writers.acquire(record)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.release(record)
            raise

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        writers.release(record)

    lone = SqliteRead(on_disk, engine.dialect) if on_disk else None
    return Database(engine, reads=engine.execution_options(**{_READ_ONLY: True}), lone=lone)


POOL_SIZE = 20
"""Connections a process keeps to PostgreSQL, all kept open once made.

The cap was 10 kept plus 10 overflow; under 50 concurrent API requests the overflow ones were
opened and closed over and over (a new server backend each time: about 5 % of the gateway's
CPU, and list throughput 652 against 761 req/s kept open). Same cap, no churn.
"""


def open_postgresql(url: str) -> Database:
    """PostgreSQL through asyncpg, without a ping before each checkout.

    A connection the server dropped (a restart, ``pg_terminate_backend``) fails its next
    statement; SQLAlchemy sees the disconnect and invalidates the whole pool, so the operation
    that met it fails (a 503 from the API; other roles see an error for that one operation)
    and the next ones get fresh connections. Nothing is lost: the failing transaction never
    committed, so nothing was promised for it. A ping per checkout cost a round trip each.

    A process that stops mid-transaction (frozen, partitioned) would hold its row locks, and
    every other process waiting on them, for as long as its connection lives; the server ends
    such a transaction after ``IDLE_IN_TRANSACTION_SECONDS`` instead.
    """
    settings = {"idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_SECONDS * 1000)}
    engine = create_async_engine(
        url, pool_size=POOL_SIZE, max_overflow=0, connect_args={"server_settings": settings}
    )
    reads = engine.execution_options(isolation_level="AUTOCOMMIT")
    return Database(engine, reads=reads, lone=AsyncpgRead(reads))
