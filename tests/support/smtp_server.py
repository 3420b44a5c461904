"""The ``smtp-in`` role running in this process, on its own event loop in a thread.

For tests that talk SMTP to the real server (smtplib, swaks, smtp-source) but need no other role:
it starts in a fraction of the time of a ``postroom up`` subprocess, and tests can look into its
storage directly (:meth:`InProcessSmtp.call`) to check what was, or was not, stored.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from postroom.settings import Settings
from smtp_in.server import SmtpServer
from storage.registry import Storage
from storage.repositories.accounts import add_domain, add_user
from storage.transaction import transaction
from tests.support.platform import PASSWORD, free_port
from tests.support.stores import migrated_storage

__all__ = ["InProcessSmtp", "running_smtp"]

T = TypeVar("T")


class InProcessSmtp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.smtp_port = settings.smtp_port
        self.submission_port = settings.submission_port
        self.loop = asyncio.new_event_loop()
        self.store: Storage | None = None
        self._stop: asyncio.Event | None = None

    def call(self, action: Callable[[Storage], Awaitable[T]]) -> T:
        """Run ``action(store)`` on the server's loop and return its result."""
        assert self.store is not None
        store = self.store
        future: Future[T] = asyncio.run_coroutine_threadsafe(_await(action(store)), self.loop)
        return future.result(30)

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)

    def submission(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.submission_port, timeout=30)

    async def serve(self, domain: str, users: tuple[str, ...], ready: threading.Event) -> None:
        async with migrated_storage(self.settings) as store:
            async with transaction(store) as session:
                await add_domain(session, domain)
                for user in users:
                    await add_user(session, user, PASSWORD)
            server = SmtpServer(store)
            await server.start()
            self.store = store
            self._stop = asyncio.Event()
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await server.stop(1.0)

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


@contextmanager
def running_smtp(
    data_dir: Path, domain: str, *users: str, **settings: Any
) -> Iterator[InProcessSmtp]:
    """``smtp-in`` on SQLite in ``data_dir`` with ``domain`` and ``users`` (password PASSWORD).

    ``settings`` override Settings fields (e.g. ``max_recipients=3``).
    """
    server = InProcessSmtp(
        Settings(
            data_dir=data_dir,
            database_url=f"sqlite+aiosqlite:///{data_dir / 'postroom.db'}",
            smtp_port=free_port(),
            submission_port=free_port(),
            hostname="mx.postroom.test",
            **settings,
        )
    )
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.loop.run_until_complete(server.serve(domain, users, ready))
        except BaseException as exc:
            failure.append(exc)
            ready.set()
        finally:
            server.loop.close()

    thread = threading.Thread(target=run, name="smtp-in", daemon=True)
    thread.start()
    ready.wait(60)
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        server.stop()
        thread.join(30)
