"""A realtime server running in the test's own process, over a migrated database.

Changes are made with :func:`storage.transaction.record_change`, exactly as the processor and
the gateway make them, so tests control precisely which events are logged and which published.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.settings import Settings
from realtime.server import RealtimeServer
from storage.registry import Storage, open_storage
from storage.repositories.accounts import add_domain, add_user, hosted_domain
from storage.repositories.tokens import issue_token
from storage.schema import migrate
from storage.transaction import record_change, transaction
from tests.support.platform import free_port
from tests.support.redis import REDIS_URL, delete_prefix, require_redis, unique_prefix


@pytest.fixture(scope="module")
def migrated_url(database_url: str) -> str:
    migrate(database_url)
    return database_url


@dataclasses.dataclass
class Running:
    """One started server and one fresh user of it."""

    store: Storage
    server: RealtimeServer
    user_id: str
    token: str

    @property
    def port(self) -> int:
        return self.store.settings.realtime_port

    def url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws{query}"

    def url_with_token(self, extra: str = "") -> str:
        return self.url(f"?token={self.token}{extra}")

    async def record(
        self, count: int, *, publish: bool = True, snippet_size: int = 10
    ) -> list[int]:
        """Commit ``count`` new messages' changes in one transaction; published after commit,
        unless not ``publish`` (as if the bus had lost them). Returns their seqs.
        """
        if publish:
            async with transaction(self.store) as session:
                return await self._changes(session, count, snippet_size)
        async with self.store.db.session() as session, session.begin():
            return await self._changes(session, count, snippet_size)

    async def _changes(self, session: AsyncSession, count: int, snippet_size: int) -> list[int]:
        seqs: list[int] = []
        for _ in range(count):
            message = {
                "id": secrets.token_hex(4),
                "mailbox": "inbox",
                "snippet": "x" * snippet_size,
            }
            event = await record_change(session, self.user_id, "mail.new", {"message": message})
            seqs.append(event.seq)
        return seqs


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_realtime(migrated_url: str, tmp_path: Path) -> AsyncIterator[Start]:
    """Start a realtime server with settings overrides; ``redis=True`` puts the bus on Redis."""
    started: list[Running] = []
    prefixes: list[str] = []

    async def start(*, redis: bool = False, **overrides: Any) -> Running:
        settings: dict[str, Any] = {
            "data_dir": tmp_path,
            "database_url": migrated_url,
            "realtime_port": free_port(),
            **overrides,
        }
        if redis:
            require_redis()
            prefixes.append(unique_prefix())
            settings |= {"redis_url": REDIS_URL, "redis_prefix": prefixes[-1]}
        store = open_storage(Settings(**settings))
        async with store.db.session() as session, session.begin():
            if await hosted_domain(session, "example.test") is None:
                await add_domain(session, "example.test")
            user = await add_user(
                session, f"u{secrets.token_hex(4)}@example.test", "correct horse battery"
            )
            token, _ = await issue_token(session, user.id, ttl_seconds=3600)
        server = RealtimeServer(store)
        await server.start()
        running = Running(store, server, user.id, token)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.server.stop(5)
        await running.store.close()
    for prefix in prefixes:
        await delete_prefix(prefix)
    await asyncio.sleep(0)
