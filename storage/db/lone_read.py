"""One-row reads for the statement that runs on every API request: the bearer-token check.

Through SQLAlchemy's async layer a statement costs far more than the read itself. On SQLite
(aiosqlite) it is five hand-offs to the connection's thread (cursor, execute, fetch, cursor
close, rollback), each waking two threads, plus the pool's checkout and return: about 0.6 ms
of CPU for a primary-key read the database answers in 10 µs, on every request. A
:class:`LoneRead` runs one ``SELECT`` and returns its first row (or its few rows) as dicts:

- :class:`EngineRead` (any engine without a faster way): SQLAlchemy Core on a pooled
  connection of the read-only engine;
- :class:`AsyncpgRead` (PostgreSQL): asyncpg's own ``fetchrow`` on a small pool of its own
  (the engine's opened and closed overflow connections under load). If that fails (a
  connection the server dropped, a server down), its connections are renewed and the read
  done once more through :class:`EngineRead`, so SQLAlchemy meets any dead connection of its
  own, refreshes its pool and raises what it raises for every other query (a 503 "try again"
  from the API), exactly as before;
- :class:`SqliteRead` (a SQLite file): one dedicated aiosqlite connection kept open, one
  hand-off per read. In WAL mode a read takes no lock and never waits for writers, and each
  statement outside a transaction sees everything committed when it starts, as ``db.reader()``
  does, so a change another process committed (a token revoked by the CLI) is seen at once.
  ``PRAGMA query_only`` makes a write through it an error. The statement is compiled once for
  SQLite and its columns converted by the column types' own result processors, so values come
  back exactly as through SQLAlchemy (aware UTC datetimes, booleans).

Only plain statements: no expanding (``IN``) parameters. A list of values is one parameter
instead (:func:`one_of`, :func:`list_parameter`): an array on PostgreSQL (``= ANY``), JSON
text on SQLite (``IN json_each``), so the statement is compiled once whatever the length.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiosqlite
import asyncpg  # type: ignore[import-untyped]  # no stubs; the pool is used as Any
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    CompoundSelect,
    Select,
    String,
    any_,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from postroom.errors import StorageError

__all__ = ["AsyncpgRead", "EngineRead", "LoneRead", "SqliteRead", "list_parameter", "one_of"]

Processor = Callable[[Any], Any] | None
Statement = Select[Any] | CompoundSelect[Any]

_SQLALCHEMY_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func")
"""Options SQLAlchemy's asyncpg dialect takes from the URL for itself, not for asyncpg."""


class LoneRead(Protocol):
    dialect: Dialect

    async def first(self, statement: Statement, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The statement's first row by column key, or None when it has no rows."""
        ...

    async def all(self, statement: Statement, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row of the statement by column key: for short results, read whole."""
        ...

    async def close(self) -> None: ...


def one_of(column: ColumnElement[str], name: str, dialect: str) -> ColumnElement[bool]:
    """``column`` is one of the list given as parameter ``name`` (see :func:`list_parameter`)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(String)))
    listed = func.json_each(bindparam(name, type_=String))
    return column.in_(select(literal_column("value")).select_from(listed))


def list_parameter(dialect: str, values: list[str]) -> list[str] | str:
    """``values`` as the parameter of a :func:`one_of` condition."""
    return values if dialect == "postgresql" else json.dumps(values)


class EngineRead:
    """SQLAlchemy Core on a pooled connection of ``engine`` (the read-only one)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect

    async def first(self, statement: Statement, params: Mapping[str, Any]) -> dict[str, Any] | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(statement, dict(params))).first()
        return None if row is None else dict(row._mapping)

    async def all(self, statement: Statement, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement, dict(params))).all()
        return [dict(row._mapping) for row in rows]

    async def close(self) -> None:
        """Nothing of its own: the engine is disposed with the database."""


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters, in the order of the placeholders
    binds: tuple[Processor, ...]
    keys: tuple[str, ...]  # the result columns
    results: tuple[Processor, ...]


def _compile(statement: Statement, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    if any(compiled.binds[name].expanding for name in names):
        raise ValueError("a lone read takes no expanding (IN) parameters")
    columns = statement.selected_columns
    return _Compiled(
        sql=compiled.string,
        names=names,
        binds=tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        ),
        keys=tuple(str(column.key) for column in columns),
        results=tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ),
    )


def _compiled_of(
    cache: dict[Statement, _Compiled], statement: Statement, dialect: Dialect
) -> _Compiled:
    compiled = cache.get(statement)
    if compiled is None:
        compiled = cache[statement] = _compile(statement, dialect)
    return compiled


def _row(compiled: _Compiled, row: Sequence[Any]) -> dict[str, Any]:
    return {
        key: value if result is None else result(value)
        for key, result, value in zip(compiled.keys, compiled.results, row, strict=True)
    }


def _values(compiled: _Compiled, params: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(
        params[name] if bind is None else bind(params[name])
        for name, bind in zip(compiled.names, compiled.binds, strict=True)
    )


async def _nothing_to_reset(_connection: Any) -> None:
    """Only lone autocommit SELECTs run on these connections: no transaction, setting or
    listener to undo, so no reset query (a round trip) on every release. asyncpg itself still
    waits out a cancelled query and closes a connection past its limits."""


class AsyncpgRead:
    """A small asyncpg pool of its own, ``fetchrow`` on it; SQLAlchemy when that fails.

    Its own pool, not the engine's: the engine's holds ``pool_size`` connections and opens
    overflow ones beyond, closing each again when it comes back to a full pool, so under 50
    concurrent requests the token check alone kept opening PostgreSQL connections (a backend
    process each). Reads this short need few connections; a request waits for one in this
    process instead.
    """

    def __init__(self, engine: AsyncEngine, *, size: int = 5) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.size = size
        self._fallback = EngineRead(engine)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._compiled: dict[Statement, _Compiled] = {}

    async def _open(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                _args, options = self.engine.dialect.create_connect_args(self.engine.url)
                for only_sqlalchemy in _SQLALCHEMY_OPTIONS:
                    options.pop(only_sqlalchemy, None)
                self._pool = await asyncpg.create_pool(
                    min_size=1, max_size=self.size, reset=_nothing_to_reset, **options
                )
            return self._pool

    async def first(self, statement: Statement, params: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def all(self, statement: Statement, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        compiled = _compiled_of(self._compiled, statement, self.engine.dialect)
        try:
            pool = self._pool or await self._open()
            rows = await pool.fetch(compiled.sql, *_values(compiled, params))
        except Exception:
            # A dropped or refused connection (or anything else): reconnect from the next read
            # on, and let SQLAlchemy do this one, so its pool meets a dead connection too,
            # refreshes, and the caller gets what any other query would raise (API: 503).
            await self._renew()
            return await self._fallback.all(statement, params)
        return [_row(compiled, row) for row in rows]

    async def _renew(self) -> None:
        if self._pool is not None:
            await self._pool.expire_connections()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


class SqliteRead:
    """One aiosqlite connection to the database file at ``path``, opened on first use."""

    def __init__(self, path: str, dialect: Dialect, *, busy_timeout: float = 30.0) -> None:
        self.path = path
        self.dialect = dialect
        self.busy_timeout = busy_timeout
        self._connection: aiosqlite.Connection | None = None
        self._opening = asyncio.Lock()
        self._compiled: dict[Statement, _Compiled] = {}

    async def _connect(self) -> aiosqlite.Connection:
        async with self._opening:
            if self._connection is None:
                connection = aiosqlite.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None
                )
                try:
                    await connection
                except BaseException:
                    # aiosqlite stops its thread after a failed connect but does not wait for
                    # it; the thread then reports to this loop, which may have closed by then.
                    await asyncio.to_thread(connection._thread.join, 5.0)
                    raise
                try:
                    await connection.execute("PRAGMA query_only=ON")
                except BaseException:
                    await connection.close()
                    raise
                self._connection = connection
            return self._connection

    async def first(self, statement: Statement, params: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def all(self, statement: Statement, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        compiled = _compiled_of(self._compiled, statement, self.dialect)
        try:
            connection = self._connection or await self._connect()
            rows = await connection.execute_fetchall(compiled.sql, _values(compiled, params))
        except sqlite3.Error as exc:
            raise StorageError(f"the database could not be read ({exc}); try again") from exc
        return [_row(compiled, row) for row in rows]

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
