"""A migrated storage of its own for each test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.settings import Settings
from storage.registry import Storage, open_storage
from storage.schema import migrate


@pytest.fixture
async def store(own_database_url: str, tmp_path: Path) -> AsyncIterator[Storage]:
    """Every backend the settings pick, over a brand-new database migrated to head."""
    settings = Settings(data_dir=tmp_path, database_url=own_database_url)
    # migrate() runs its own event loop, so it cannot run on this one.
    await asyncio.to_thread(migrate, settings.database_url)
    opened = open_storage(settings)
    try:
        yield opened
    finally:
        await opened.close()
