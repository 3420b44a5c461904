"""A storage handle over a freshly migrated database, as every role opens it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from postroom.settings import Settings
from storage.registry import Storage, open_storage
from storage.schema import migrate

__all__ = ["migrated_storage"]


@asynccontextmanager
async def migrated_storage(settings: Settings) -> AsyncIterator[Storage]:
    # migrate() runs its own event loop, so it cannot run on this one.
    await asyncio.to_thread(migrate, settings.database_url)
    store = open_storage(settings)
    try:
        yield store
    finally:
        await store.close()
