"""What a role is to the runner: something that starts, says where it listens, and stops.

``stop(grace)`` must stop taking new work at once, let work in flight finish for up to ``grace``
seconds, and hand back anything still unfinished so another process can take it.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Service"]


class Service(Protocol):
    name: str

    async def start(self) -> list[str]:
        """Start serving; return the addresses listened on, for the log."""
        ...

    async def stop(self, grace: float) -> None: ...
