"""A process of WebSocket clients for bench/realtime: hold many connections, time one frame.

The parent drives each process over a pipe: the process opens ``count`` connections (reading
each one's ``ready``), reports, then on ``"listen"`` starts waiting on every connection for a
``mail.new`` frame, says it is listening, and reports the ``time.monotonic()`` at which each
connection got it (CLOCK_MONOTONIC is one clock for every process of the machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import time
from multiprocessing.connection import Connection

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["hold"]

CONNECT_CONCURRENCY = 64
RECEIVE_TIMEOUT = 120.0


def hold(pipe: Connection, url: str, count: int, source: str) -> None:
    """Process entry point; ``source`` is the loopback address to connect from."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_hold(pipe, url, count, source))


async def _open(url: str, source: str) -> ClientConnection:
    ws = await connect(
        url,
        compression=None,
        ping_interval=None,  # the server pings; the client only answers
        open_timeout=120,
        max_queue=4,
        local_addr=(source, 0),
    )
    ready = json.loads(await ws.recv())
    if ready.get("type") != "ready":
        raise RuntimeError(f"expected ready, got {ready}")
    return ws


async def _first_new_mail(ws: ClientConnection) -> float:
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "mail.new":
                return time.monotonic()


async def _hold(pipe: Connection, url: str, count: int, source: str) -> None:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    errors: list[str] = []

    async def one() -> ClientConnection | None:
        async with gate:
            try:
                return await _open(url, source)
            except Exception as exc:
                errors.append(repr(exc))
                return None

    opened = [ws for ws in await asyncio.gather(*(one() for _ in range(count))) if ws]
    pipe.send(("connected", len(opened), errors[:3]))
    try:
        while True:
            command = await asyncio.to_thread(pipe.recv)
            if command != "listen":
                break
            waiting = [asyncio.create_task(_first_new_mail(ws)) for ws in opened]
            await asyncio.sleep(0)
            pipe.send(("listening",))
            results = await asyncio.gather(*waiting, return_exceptions=True)
            pipe.send(("received", [r for r in results if isinstance(r, float)]))
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
