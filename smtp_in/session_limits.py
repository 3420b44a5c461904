"""A cap on concurrent SMTP sessions per client address.

One address holding hundreds of idle sessions would starve everyone else of the listener;
past the cap a new connection is told ``421 4.7.0`` and closed before any command is read.
Counted per listener and per process: the cap protects this process's sockets.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["PeerSessions"]


class PeerSessions:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        """Count one more session from ``address``, or refuse it when at the cap."""
        if self._open[address] >= self.limit:
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def open_from(self, address: str) -> int:
        return self._open[address]
