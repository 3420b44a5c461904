"""The metadata store: an async SQLAlchemy engine plus what differs between engines.

Everything engine-specific lives in the two ``open_*`` functions the registry calls, so the
repositories above never ask which database they run on.
"""

from __future__ import annotations

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
from sqlalchemy.sql.dml import Insert

__all__ = [
    "Database",
    "insert_ignoring_duplicates",
    "insert_or_update",
    "open_postgresql",
    "open_sqlite",
]

_INSERTS: dict[str, Callable[[Any], Insert]] = {
    "sqlite": sqlite.insert,
    "postgresql": postgresql.insert,
}


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


class Database:
    """An engine and its session factory."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.session = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    async def close(self) -> None:
        await self.engine.dispose()


def open_sqlite(url: str) -> Database:
    """SQLite in WAL mode, each transaction taking the write lock up front.

    ``BEGIN IMMEDIATE`` makes a writer wait (``busy_timeout``) instead of failing when another
    connection or process writes; ``synchronous=FULL`` makes a commit survive power loss, which
    is what our 250 promises.
    """
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            "busy_timeout=30000",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return Database(engine)


def open_postgresql(url: str) -> Database:
    engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    return Database(engine)
