"""A process of WebSocket clients for bench/realtime: hold many connections, time one frame.

The parent drives each process over a pipe: the process opens ``count`` connections (each one's
``ready`` read; one the server refuses, say with 1013 while its database pool is exhausted, is
retried a second later as a browser would), reports how many and the retries, then on
``"listen"`` says it is listening and reports the ``time.monotonic()`` at which each connection
got its first ``mail.new`` frame (CLOCK_MONOTONIC is one clock for every process of the
machine).

The clients are deliberately minimal: an ``asyncio.Protocol`` per connection that does the
handshake by hand, reads unmasked server frames, answers pings and stamps the arrival time in
``data_received``. No task per connection, no JSON parsing: on a two-core machine the clients
share the CPU with the server they measure, and a full WebSocket client per connection would
make the benchmark measure the clients.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import struct
import time
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

__all__ = ["hold"]

CONNECT_CONCURRENCY = 32  # handshakes under way per process; each needs the server's database
OPEN_TIMEOUT = 120.0
RECEIVE_TIMEOUT = 120.0
OPEN_ATTEMPTS = 5
RETRY_SECONDS = 1.0

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def hold(pipe: Connection, url: str, count: int, source: str) -> None:
    """Process entry point; ``source`` is the loopback address to connect from."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_hold(pipe, url, count, source))


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask), for the small control frames sent here."""
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(body)]) + key + body


class _Client(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.new_mail: asyncio.Future[float] | None = None
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(
                ConnectionError(f"closed by the server, code {self.close_code} ({exc})")
            )
        if self.new_mail is not None:
            self.new_mail.cancel()  # never got the frame: not counted

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.upgraded:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(RuntimeError(head.split(b"\r\n", 1)[0].decode()))
                return
            self.upgraded, self.buffer = True, rest
        while (frame := self._next_frame()) is not None:
            self._on_frame(*frame, now)

    def _next_frame(self) -> tuple[int, bytes] | None:
        buffer = self.buffer
        if len(buffer) < 2:
            return None
        length, start = buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            (length,), start = struct.unpack_from("!H", buffer, 2), 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            (length,), start = struct.unpack_from("!Q", buffer, 2), 10
        if len(buffer) < start + length:
            return None
        self.buffer = buffer[start + length :]
        return buffer[0] & 0x0F, buffer[start : start + length]

    def _on_frame(self, opcode: int, payload: bytes, now: float) -> None:
        assert self.transport is not None
        if opcode == PING:
            self.transport.write(_masked(PONG, payload))
        elif opcode == CLOSE:
            if len(payload) >= 2:
                (self.close_code,) = struct.unpack_from("!H", payload)
            self.transport.close()
        elif opcode == TEXT:
            if not self.ready.done():
                if b'"ready"' in payload:
                    self.ready.set_result(None)
                else:
                    self.ready.set_exception(RuntimeError(f"expected ready, got {payload!r}"))
            elif self.new_mail is not None and not self.new_mail.done():
                if b'"mail.new"' in payload:
                    self.new_mail.set_result(now)


async def _open(url: str, source: str) -> _Client:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    client = _Client(request)
    transport, _ = await loop.create_connection(lambda: client, host, port, local_addr=(source, 0))
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            await client.ready
    except BaseException:
        transport.close()
        raise
    return client


async def _hold(pipe: Connection, url: str, count: int, source: str) -> None:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    errors: list[str] = []
    retries = 0

    async def one() -> _Client | None:
        """Open one connection, retrying as a browser would (1013: the server is busy)."""
        nonlocal retries
        for attempt in range(OPEN_ATTEMPTS):
            if attempt:
                retries += 1
                await asyncio.sleep(RETRY_SECONDS)
            async with gate:
                try:
                    return await _open(url, source)
                except Exception as exc:
                    failure = repr(exc)
        errors.append(failure)
        return None

    opened = [c for c in await asyncio.gather(*(one() for _ in range(count))) if c]
    pipe.send(("connected", len(opened), retries, errors[:3]))
    loop = asyncio.get_running_loop()
    try:
        while True:
            command = await asyncio.to_thread(pipe.recv)
            if command != "listen":
                break
            for client in opened:
                client.new_mail = loop.create_future()
            pipe.send(("listening",))
            waiting = [client.new_mail for client in opened if client.new_mail is not None]
            await asyncio.wait(waiting, timeout=RECEIVE_TIMEOUT)
            pipe.send(("received", [w.result() for w in waiting if w.done() and not w.cancelled()]))
    finally:
        for client in opened:
            if client.transport is not None and not client.transport.is_closing():
                client.transport.write(_masked(CLOSE, struct.pack("!H", 1000)))
                client.transport.close()
