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

__all__ = ["OneHopConnection", "OneHopCursor", "connector"]

Description = tuple[tuple[Any, ...], ...] | None
Outcome = tuple[Description, int, int | None, list[Any]]


def _run(connection: sqlite3.Connection, many: bool, sql: str, parameters: Any) -> Outcome:
    """On the connection's thread: the statement, its rows and what the cursor says of it."""
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
        hand_off = cast(Callable[..., Awaitable[Outcome]], connection._execute)
        outcome = await hand_off(
            _run, connection._conn, many, sql, () if parameters is None else parameters
        )
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

    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        return OneHopCursor(self)

    async def rollback(self) -> None:
        # Reading the flag on the loop is safe: this connection's calls run one at a time.
        if self._conn.in_transaction:
            await super().rollback()


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
        connection._thread.daemon = True  # as SQLAlchemy does: a leaked one must not hang exit
        await connection  # starts its thread and connects there
        return connection

    return connect
