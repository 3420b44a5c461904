"""Work queues: hints that work exists, delivered at least once.

The database row a job points at is the truth; a consumer must be idempotent and must look at
that row before acting. A claimed job is leased: if its consumer dies, the job becomes
claimable again when the lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["INCOMING", "OUTGOING", "Hint", "Job", "Queue", "TransactionalQueue"]

INCOMING = "incoming"
OUTGOING = "outgoing"


@dataclass(frozen=True)
class Job:
    id: str
    queue: str
    payload: dict[str, Any]
    attempts: int


Hint = tuple[str, dict[str, Any]]
"""A queue's name and one job's payload."""


class Queue(Protocol):
    async def put(self, queue: str, payload: dict[str, Any], *, delay: float = 0.0) -> str: ...

    async def put_many(self, hints: list[Hint]) -> None:
        """Due jobs for several queues at once (one statement or one round trip): the hints of
        a batch of sends, put after their transaction committed."""
        ...

    async def claim(
        self, queue: str, consumer: str, *, limit: int = 10, lease: float = 120.0, wait: float = 1.0
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs, waiting up to ``wait`` seconds for one to arrive."""
        ...

    async def ack(self, job: Job) -> None:
        """The job is done; it will not be seen again."""
        ...

    async def release(self, job: Job, *, delay: float = 0.0) -> None:
        """Hand the job back, claimable again after ``delay`` seconds."""
        ...

    async def depth(self, queue: str) -> int: ...

    async def close(self) -> None: ...


@runtime_checkable
class TransactionalQueue(Protocol):
    """A queue kept in the metadata database, which can take jobs in the caller's transaction:
    the hint then commits (or rolls back) with the rows it points at, at no extra commit, and
    in-process consumers are woken once it has committed."""

    async def put_in(self, session: AsyncSession, hints: list[Hint]) -> None: ...
