"""A chaos SMTP receiver: fails a share of transactions at random, records what it accepted.

It answers 421 (and hangs up), 451, or drops the connection without a word, each a third of
``failure_rate`` of the messages; the rest get a 250. Every failure is transient, so a sender
that retries must end with every message delivered. A message it dropped or refused was never
acknowledged, so sending it again is right; a message it *accepted* twice is a duplicate, which
only a sender that lost the 250 (crashed, or could not record it) can cause.

Accepted messages are keyed by one header of theirs (``Subject``, ``Message-ID``, ...), with the
time of each acceptance, so a test can tell when a duplicate's first copy went through. It runs
as an aiosmtpd handler, on the ``Controller``'s own thread; read it through :meth:`snapshot`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from typing import Any

__all__ = ["ChaosReceiver"]


class ChaosReceiver:
    def __init__(
        self, seed: int, *, failure_rate: float = 0.2, key_header: str = "Subject"
    ) -> None:
        self.random = random.Random(seed)
        self.failure_rate = failure_rate
        self.prefix = f"{key_header.lower()}:".encode()
        self.accepted: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.accepted_at: dict[str, list[float]] = {}
        """Each key's acceptance times (``time.monotonic()``), first first."""
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        roll = self.random.random()
        rate = self.failure_rate
        if roll < rate / 3:
            self._fail("421")
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 shutting down"
        if roll < 2 * rate / 3:
            self._fail("451")
            return "451 4.3.0 try again later"
        if roll < rate:
            self._fail("dropped")
            server.transport.close()
            return "451 4.3.0 (never sent: the connection is gone)"
        key = self._key(envelope.content)
        with self._lock:
            self.accepted[key] += 1
            self.accepted_at.setdefault(key, []).append(time.monotonic())
        return "250 2.0.0 Ok"

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        """Copies of (accepted per key, failures per kind), safe to read from another thread."""
        with self._lock:
            return Counter(self.accepted), Counter(self.failures)

    def first_accepted(self, key: str) -> float:
        with self._lock:
            return self.accepted_at[key][0]

    def _fail(self, kind: str) -> None:
        with self._lock:
            self.failures[kind] += 1

    def _key(self, content: bytes) -> str:
        for line in content.split(b"\r\n"):
            if not line:
                break  # end of the header
            if line.lower().startswith(self.prefix):
                return line[len(self.prefix) :].strip().decode(errors="replace")
        return ""
