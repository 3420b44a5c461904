"""Alembic migrations: they build exactly the models' schema, and roles refuse an old one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from postroom.errors import SchemaOutOfDate
from storage.db.database import Database
from storage.db.models import Base
from storage.registry import open_database
from storage.schema import alembic_config, check_schema, migrate

MODEL_TABLES = set(Base.metadata.tables)
# The search engines' own objects (an FTS5 table and its shadow tables on SQLite, a generated
# tsvector column and its GIN index on PostgreSQL) cannot be SQLAlchemy models; migration 0006
# names them all search_fts* and they are left out of the comparison.
ENGINE_OWNED = "search_fts"


def _modelled(obj: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
    return not (name or "").startswith(ENGINE_OWNED)


@pytest.fixture
async def db(own_database_url: str) -> AsyncIterator[Database]:
    """An empty, unmigrated database."""
    database = open_database(own_database_url)
    try:
        yield database
    finally:
        await database.close()


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        names: list[str] = await connection.run_sync(lambda c: inspect(c).get_table_names())
    return {name for name in names if not name.startswith(ENGINE_OWNED)}


async def _upgrade(db: Database) -> None:
    # Alembic runs its own event loop, so it needs a thread of its own.
    await asyncio.to_thread(migrate, db.url)


async def _downgrade_to_base(db: Database) -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(db.url), "base")


async def test_upgrade_to_head_then_check_schema_passes(db: Database) -> None:
    await _upgrade(db)

    await check_schema(db)
    assert await _tables(db) == MODEL_TABLES | {"alembic_version"}


async def test_check_schema_on_an_unmigrated_database_says_to_migrate(db: Database) -> None:
    with pytest.raises(SchemaOutOfDate, match="run `postroom migrate`"):
        await check_schema(db)


async def test_upgrading_twice_is_harmless(db: Database) -> None:
    await _upgrade(db)
    await _upgrade(db)

    await check_schema(db)


async def test_downgrade_to_base_removes_every_table_and_upgrade_works_again(
    db: Database,
) -> None:
    await _upgrade(db)

    await _downgrade_to_base(db)

    assert await _tables(db) - {"alembic_version"} == set()
    with pytest.raises(SchemaOutOfDate):
        await check_schema(db)

    await _upgrade(db)
    await check_schema(db)
    assert await _tables(db) == MODEL_TABLES | {"alembic_version"}


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    """Autogenerate finds nothing to do: the migrations and the models describe one schema."""
    await _upgrade(db)

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": _modelled}
        )
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as connection:
        differences = await connection.run_sync(diff)

    assert differences == []
