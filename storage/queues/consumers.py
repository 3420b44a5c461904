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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from postroom.settings import Settings
from storage.db.types import utcnow
from storage.queues import Job, Queue

__all__ = ["ConsumerOptions", "QueueConsumers", "sweep_options"]

log = logging.getLogger(__name__)

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

    async def _consume(self, number: int) -> None:
        consumer = f"{self._consumer}/{number}"
        while not self._stopping.is_set():
            try:
                jobs = await self.queue.claim(
                    self.name, consumer, limit=1, lease=self.options.lease, wait=1.0
                )
            except Exception:
                log.exception("cannot claim from the %s queue; retrying", self.name)
                await asyncio.sleep(1.0)
                continue
            for job in jobs:
                try:
                    await self._run(job)
                except Exception:
                    # ack or release failed: the lease expires and the job comes back, so
                    # keep consuming rather than let this task die
                    log.exception("queue bookkeeping for %s job %s failed", self.name, job.id)

    async def _run(self, job: Job) -> None:
        if self._stopping.is_set():
            await self.queue.release(job)
            return
        try:
            delay = await self.handle(job)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.queue.release(job))
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
            await self.queue.release(job, delay=retry)
            return
        if delay is None:
            await self.queue.ack(job)
        else:
            await self.queue.release(job, delay=delay)

    async def _sweep(self) -> None:
        """At start re-enqueue everything due, then whatever stays due past ``sweep_age``."""
        age = timedelta(0)
        while not self._stopping.is_set():
            try:
                payloads = await self.find_lost(utcnow() - age)
                for payload in payloads:
                    await self.queue.put(self.name, payload)
                if payloads:
                    log.info("sweeper re-enqueued %d %s job(s)", len(payloads), self.name)
            except Exception:
                log.exception("sweep of the %s queue failed; will try again", self.name)
            age = self.options.sweep_age
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.options.sweep_interval)
