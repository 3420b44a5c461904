"""Fixtures of the storage tests: a migrated storage per test (SQLite and PostgreSQL), a
Redis key prefix per test, and the hand-offs to SQLite connections' threads, counted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from postroom.settings import Settings
from storage.db.sqlite_driver import OneHopConnection
from storage.registry import Storage
from tests.support.redis import delete_prefix, require_redis, unique_prefix
from tests.support.stores import migrated_storage


@pytest.fixture
async def store(own_database_url: str, tmp_path: Path) -> AsyncIterator[Storage]:
    """Every backend the settings pick, over a brand-new database migrated to head."""
    settings = Settings(data_dir=tmp_path, database_url=own_database_url)
    async with migrated_storage(settings) as store:
        yield store


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own, deleted afterwards (the server is shared)."""
    require_redis()
    chosen = unique_prefix()
    try:
        yield chosen
    finally:
        await delete_prefix(chosen)


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function sent to a connection's thread, in order."""
    sent: list[str] = []
    original = OneHopConnection._execute

    async def counted(
        self: OneHopConnection, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        sent.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(OneHopConnection, "_execute", counted)
    return sent
