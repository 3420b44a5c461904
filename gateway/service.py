"""The gateway role: uvicorn serving the app inside the shared event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from gateway.app import create_app
from storage.registry import Storage

__all__ = ["Gateway"]


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: the runner owns signals for every role."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Gateway:
    name = "gateway"

    def __init__(self, store: Storage) -> None:
        self.store = store
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> list[str]:
        settings = self.store.settings
        config = uvicorn.Config(
            create_app(self.store),
            host=settings.listen_address,
            port=settings.http_port,
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error, if that is what ended it
                raise RuntimeError("the gateway stopped while starting")
            await asyncio.sleep(0.02)
        return [f"http://{settings.listen_address}:{settings.http_port} (API and web UI)"]

    async def stop(self, grace: float) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, grace)
        except TimeoutError:
            self._server.force_exit = True
            await self._task
