"""A migrated storage of its own for each test, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postroom.settings import Settings
from storage.registry import Storage
from tests.support.stores import migrated_storage


@pytest.fixture
async def store(own_database_url: str, tmp_path: Path) -> AsyncIterator[Storage]:
    """Every backend the settings pick, over a brand-new database migrated to head."""
    settings = Settings(data_dir=tmp_path, database_url=own_database_url)
    async with migrated_storage(settings) as store:
        yield store
