"""Schema migrations (Alembic) run from code, and the check that roles run before serving."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from postroom.errors import SchemaOutOfDate
from storage.db.database import Database

__all__ = ["alembic_config", "check_schema", "migrate"]

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the database to ``revision``. Blocking: call it outside an event loop."""
    command.upgrade(alembic_config(database_url), revision)


async def check_schema(db: Database) -> None:
    head = ScriptDirectory.from_config(alembic_config(db.url)).get_current_head()

    def current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as connection:
        found = await connection.run_sync(current)
    if found != head:
        raise SchemaOutOfDate(
            f"the database is at schema revision {found or 'none'} but this postroom needs "
            f"{head}: run `postroom migrate`"
        )
