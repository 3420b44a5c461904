"""The one engine behind every queue-driven role: consumers, a sweeper, a graceful stop.

A role supplies two things: ``handle(job)``, which does the work and returns ``None`` (done:
ack) or a delay in seconds (not yet: hand the job back for later); and ``find_lost(before)``,
which asks the database for work due before ``before`` and returns the payloads to enqueue
again. The database is the truth, so the sweeper makes a lost or flushed queue cost time only.

Failures are retried with a growing delay; a stop hands every job not finished back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from postroom.settings import Settings
from storage.db.types import utcnow
from storage.queues import Job, Queue

__all__ = ["ConsumerOptions", "QueueConsumers", "sweep_options"]

log = logging.getLogger(__name__)

SETTLE_SECONDS = 5.0
"""How long a stop waits, past the grace period, for acks and releases under way."""

SWEEP_PUTS = 50
"""Re-enqueued hints a sweep puts at once."""

Handler = Callable[[Job], Awaitable[float | None]]
FindLost = Callable[[datetime], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class ConsumerOptions:
    concurrency: int = 4
    lease: float = 120.0
    sweep_interval: float = 30.0
    sweep_age: timedelta = timedelta(seconds=60)
    retry_delay: float = 5.0
    max_retry_delay: float = 300.0


def sweep_options(settings: Settings) -> dict[str, Any]:
    """The sweeper settings every role shares, as ``ConsumerOptions`` keyword arguments."""
    return {
        "sweep_interval": settings.sweep_interval_seconds,
        "sweep_age": timedelta(seconds=settings.sweep_age_seconds),
    }


class QueueConsumers:
    def __init__(
        self,
        queue: Queue,
        name: str,
        handle: Handler,
        find_lost: FindLost,
        options: ConsumerOptions,
    ) -> None:
        self.queue = queue
        self.name = name
        self.handle = handle
        self.find_lost = find_lost
        self.options = options
        self._consumer = f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._claiming = asyncio.Lock()
        self._claimed: deque[Job] = deque()
        self._idle = 0
        self._settling: set[asyncio.Future[None]] = set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume(n)) for n in range(self.options.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._sweep()))

    async def stop(self, grace: float) -> None:
        """Stop claiming now; let jobs in hand finish for ``grace`` seconds; cancel the rest."""
        self._stopping.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=SETTLE_SECONDS)
        while self._claimed:  # claimed for a consumer that was cancelled before taking it
            job = self._claimed.popleft()
            with contextlib.suppress(Exception):
                await self.queue.release(job)

    async def _consume(self, number: int) -> None:
        while not self._stopping.is_set():
            try:
                job = await self._next_job()
            except Exception:
                log.exception("cannot claim from the %s queue; retrying", self.name)
                await asyncio.sleep(1.0)
                continue
            if job is None:
                continue
            try:
                await self._run(job)
            except Exception:
                # ack or release failed: the lease expires and the job comes back, so
                # keep consuming rather than let this task die
                log.exception("queue bookkeeping for %s job %s failed", self.name, job.id)

    async def _next_job(self) -> Job | None:
        """A job for one idle consumer; None if none came within the claim's wait.

        One consumer at a time claims, for every consumer then idle: under a backlog that is
        one claim transaction for several jobs instead of one each. Nobody claims more than
        the idle consumers take at once, so a job never waits here while its lease runs and
        another process could have had it.
        """
        self._idle += 1
        try:
            async with self._claiming:
                if not self._claimed and not self._stopping.is_set():
                    self._claimed.extend(
                        await self.queue.claim(
                            self.name,
                            f"{self._consumer}/{id(self)}",
                            limit=self._idle,
                            lease=self.options.lease,
                            wait=1.0,
                        )
                    )
                return self._claimed.popleft() if self._claimed else None
        finally:
            self._idle -= 1

    async def _run(self, job: Job) -> None:
        if self._stopping.is_set():
            await self._settle(self.queue.release(job))
            return
        try:
            delay = await self.handle(job)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._settle(self.queue.release(job))
            raise
        except Exception:
            retry = min(self.options.retry_delay * job.attempts, self.options.max_retry_delay)
            log.exception(
                "%s job %s failed (attempt %d); retrying in %.0f s",
                self.name,
                job.payload,
                job.attempts,
                retry,
            )
            await self._settle(self.queue.release(job, delay=retry))
            return
        if delay is None:
            await self._settle(self.queue.ack(job))
        else:
            await self._settle(self.queue.release(job, delay=delay))

    async def _settle(self, bookkeeping: Coroutine[Any, Any, None]) -> None:
        """Ack or release to the end even if a stop cancels the consumer meanwhile.

        A job whose work is done (or handed back) but whose ack was cut off would stay
        claimed until its lease ran out; :meth:`stop` waits for these before returning.
        """
        task = asyncio.ensure_future(bookkeeping)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        await asyncio.shield(task)

    async def _sweep(self) -> None:
        """At start re-enqueue everything due, then whatever stays due past ``sweep_age``."""
        age = timedelta(0)
        while not self._stopping.is_set():
            try:
                payloads = await self.find_lost(utcnow() - age)
                # a few at a time, so a backend that batches (the table queue) can
                for start in range(0, len(payloads), SWEEP_PUTS):
                    chunk = payloads[start : start + SWEEP_PUTS]
                    await asyncio.gather(*(self.queue.put(self.name, p) for p in chunk))
                if payloads:
                    log.info("sweeper re-enqueued %d %s job(s)", len(payloads), self.name)
            except Exception:
                log.exception("sweep of the %s queue failed; will try again", self.name)
            age = self.options.sweep_age
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.options.sweep_interval)
