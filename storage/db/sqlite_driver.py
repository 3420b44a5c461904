"""aiosqlite with one hand-off per statement, for the SQLite engine behind ``db.session()``.

aiosqlite runs every call on its connection's own thread, and SQLAlchemy's adapter makes four
calls for a statement: open a cursor, execute, fetch the rows, close the cursor. Each call is a
hand-off to that thread and back, and each way back waits for two turns of the event loop (the
thread's result, then the task it wakes) and for the thread to win the GIL from a busy loop.
A batch of sends is a transaction of about fifteen statements: sixty hand-offs, now fifteen.
(That alone did not make the API's sends measurably faster; inbound processing, which runs
many small transactions, used about 5 % less CPU a message in ``bench.inbound``.)

:class:`OneHopConnection` is aiosqlite's connection with a cursor that does the four calls in
one hand-off: it executes, fetches every row and closes the sqlite3 cursor on the connection's
thread, and then answers ``fetchall`` and ``close`` without leaving the event loop. That is
what SQLAlchemy's (non-streaming) cursor asked for anyway: it fetches every row at once. A
rollback with no transaction open (the pool's reset of every connection it takes back) does
not leave the loop either.

Statements that answer nothing can also wait and go with the next one that does, in its
hand-off. Every ``BEGIN`` waits so (a transaction's first statement takes it along; a
transaction that ran nothing costs no hand-off at all), and a transaction may ask, with
:func:`defer_inserts`, for its ``INSERT`` statements without ``RETURNING`` to wait too, until a
statement with an answer or the commit. Under load each hand-off waits for the busy loop to
let go of the GIL (up to the 5 ms switch interval, each way): the outbox's batch of sends was
fifteen hand-offs and 30 to 80 ms, of which the statements took about 10. The cost of waiting:
an ``INSERT`` that fails (a duplicate key) raises from the later statement or the commit that
carried it, so a transaction that asks for this must treat a failure anywhere as the
failure of the whole, as the outbox's group commit does.

It leans on three attributes aiosqlite documents as private (``_execute``, ``_conn``,
``_thread``); SQLAlchemy's own adapter uses the same ones, and ``pyproject.toml`` keeps
aiosqlite to the releases this was written against. ``tests/storage/test_sqlite_driver.py``
checks the hand-offs and the answers.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import aiosqlite
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["OneHopConnection", "OneHopCursor", "connector", "defer_inserts"]

Description = tuple[tuple[Any, ...], ...] | None
Outcome = tuple[Description, int, int | None, list[Any]]


Statement = tuple[bool, str, Any]
"""(executemany?, SQL, parameters)"""


def _run(
    connection: sqlite3.Connection,
    many: bool,
    sql: str,
    parameters: Any,
    waiting: Sequence[Statement] = (),
) -> Outcome:
    """On the connection's thread: the statements that waited, then this one, with its rows
    and what the cursor says of it."""
    _run_waiting(connection, waiting)
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _run_waiting(connection: sqlite3.Connection, waiting: Sequence[Statement]) -> None:
    for many, sql, parameters in waiting:
        if many:
            connection.executemany(sql, parameters).close()
        else:
            connection.execute(sql, parameters).close()


def _commit(connection: sqlite3.Connection, waiting: Sequence[Statement]) -> None:
    _run_waiting(connection, waiting)
    connection.commit()


def _may_wait(sql: str, inserts: bool) -> bool:
    """A statement with nothing to answer: a ``BEGIN``, or (when asked) a plain ``INSERT``."""
    head = sql.lstrip()[:6].upper()
    if head == "BEGIN ":
        return True
    return inserts and head == "INSERT" and "RETURNING" not in sql.upper()


class OneHopCursor:
    """The cursor SQLAlchemy's aiosqlite adapter drives, executing in a single hand-off."""

    def __init__(self, connection: OneHopConnection) -> None:
        self._connection = connection
        self._rows: deque[Any] = deque()
        self.description: Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> OneHopCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> OneHopCursor:
        return await self._hop(False, sql, parameters)

    async def executemany(self, sql: str, parameters: Sequence[Any]) -> OneHopCursor:
        return await self._hop(True, sql, parameters)

    async def _hop(self, many: bool, sql: str, parameters: Any) -> OneHopCursor:
        connection = self._connection
        parameters = () if parameters is None else parameters
        if _may_wait(sql, connection.deferring_inserts):
            connection.waiting.append((many, sql, parameters))
            self.description, self.rowcount, self.lastrowid = None, -1, None  # not known yet
            self._rows = deque()
            return self
        waiting = connection.take_waiting()
        hand_off = cast(Callable[..., Awaitable[Outcome]], connection._execute)
        outcome = await hand_off(_run, connection._conn, many, sql, parameters, waiting)
        self.description, self.rowcount, self.lastrowid, rows = outcome
        self._rows = deque(rows)
        return self

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None

    async def close(self) -> None:
        self._rows.clear()


class OneHopConnection(aiosqlite.Connection):
    """aiosqlite's connection whose cursors execute in one hand-off each (module docstring)."""

    waiting: list[Statement]
    """Statements held back to go with the next hand-off (module docstring)."""
    deferring_inserts = False
    """Whether this transaction's plain ``INSERT`` statements wait too (:func:`defer_inserts`)."""

    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        return OneHopCursor(self)

    def take_waiting(self) -> list[Statement]:
        waiting, self.waiting = self.waiting, []
        return waiting

    async def commit(self) -> None:
        waiting = self._end_transaction()
        if any(not _may_wait(sql, False) for _many, sql, _parameters in waiting):
            hand_off = cast(Callable[..., Awaitable[None]], self._execute)
            await hand_off(_commit, self._conn, waiting)
        elif self._conn.in_transaction:
            await super().commit()
        # else: at most a BEGIN waited, and nothing after it: nothing to begin or commit

    async def rollback(self) -> None:
        self._end_transaction()  # what waited never ran: nothing of it to undo
        # Reading the flag on the loop is safe: this connection's calls run one at a time.
        if self._conn.in_transaction:
            await super().rollback()

    def _end_transaction(self) -> list[Statement]:
        self.deferring_inserts = False
        return self.take_waiting()


def connector(database: str, **kwargs: Any) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: a started :class:`OneHopConnection`.

    ``kwargs`` go to :func:`sqlite3.connect` as SQLAlchemy's would (``check_same_thread`` off:
    the thread that connects is the one that runs every call, but SQLAlchemy reads attributes
    from the loop's thread).
    """

    async def connect() -> OneHopConnection:
        connection = OneHopConnection(
            lambda: sqlite3.connect(database, check_same_thread=False, **kwargs), 64
        )
        connection.waiting = []
        connection._thread.daemon = True  # as SQLAlchemy does: a leaked one must not hang exit
        await connection  # starts its thread and connects there
        return connection

    return connect


async def defer_inserts(session: AsyncSession) -> None:
    """Let the ``INSERT`` statements of ``session``'s transaction without ``RETURNING`` wait for the
    next statement with an answer, or the commit, and go in its hand-off (module docstring).

    Only for a transaction that fails as a whole: a failing ``INSERT`` raises later, from the
    statement or the commit that carried it. A no-op on any other driver.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if isinstance(driver, OneHopConnection):
        driver.deferring_inserts = True
