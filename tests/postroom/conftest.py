"""Fixtures of the core's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.settings import Settings
from storage.schema import migrate
from tests.support.ports import free_port
from tests.support.services import postgres_database


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (for tests that need PostgreSQL itself)."""
    with postgres_database() as url:
        yield url


@pytest.fixture
async def gateway_settings(tmp_path: Path) -> Settings:
    """Settings for running the gateway role in this process, on a migrated SQLite file."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'postroom.db'}",
        http_port=free_port(),
    )
    await asyncio.to_thread(migrate, settings.database_url)
    return settings
