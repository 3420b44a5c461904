"""Group commit: requests made at the same time share one database transaction.

Every commit costs an fsync and, on SQLite, a turn at the single writer lock; at hundreds of
deliveries a second, one transaction per claim, lease, result and ack is where the time goes.
A :class:`GroupCommit` queues the requests of concurrent callers; while one batch is being
written, the requests arriving meanwhile wait and then go together in the next. A lone caller
is written at once, so nothing waits for a batch to fill up: batches grow only with load.

A failed batch is not the failure of every request in it: each is then written alone, so one
bad request (or a deadlock between two workers' batches) fails only its own caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Answer = TypeVar("Answer")


class GroupCommit(Generic[Request, Answer]):
    """Runs ``write(requests)`` for whatever requests are waiting, one batch at a time.

    ``write`` returns one answer per request, in order. A caller cancelled while its batch
    is under way does not stop the batch: the others in it still need their answers.
    Requests must be independent of each other: any of them may be written alone.
    """

    def __init__(
        self,
        write: Callable[[Sequence[Request]], Awaitable[Sequence[Answer]]],
        *,
        max_batch: int = 200,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._waiting: list[tuple[Request, asyncio.Future[Answer]]] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(self, request: Request) -> asyncio.Future[Answer]:
        """The future answer to ``request``: await it, or shield it to see it even when the
        caller is cancelled (a lease taken for a caller gone must be given back)."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not future.get_loop():
            self._writer = asyncio.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            await self._run(batch)

    async def _run(self, batch: list[tuple[Request, asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self._write([request for request, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.warning("a batch of %d writes failed (%s); writing each alone", len(batch), exc)
            for one in batch:
                await self._run([one])
            return
        except BaseException as exc:  # cancelled (shutdown): nobody gets an answer
            for _, future in batch:
                _fail(future, exc)
            raise
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(answer)


def _fail(future: asyncio.Future[Answer], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
