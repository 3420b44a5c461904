"""Reading a test database directly, to check what a command did or did not change."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from storage.registry import open_database

__all__ = ["snapshot"]

TABLES = ("domains", "users", "mailboxes", "messages", "inbound_messages", "queue_jobs")


def snapshot(database_url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the tables a bad command must leave alone."""

    async def read() -> dict[str, list[tuple[object, ...]]]:
        db = open_database(database_url)
        try:
            async with db.engine.connect() as connection:
                return {
                    table: [
                        tuple(r)
                        for r in await connection.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
                    ]
                    for table in TABLES
                }
        finally:
            await db.close()

    return asyncio.run(read())
