"""The queue consumer engine every worker role runs on: done, later, failed, lost, stopped."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from storage.queues import Job
from storage.queues.consumers import ConsumerOptions, QueueConsumers
from storage.registry import Storage

QUEUE = "work"
FAST = ConsumerOptions(concurrency=2, lease=30.0, sweep_interval=0.1, retry_delay=0.1)


async def _nothing_lost(_before: datetime) -> list[dict[str, Any]]:
    return []


async def _eventually(condition: Any) -> None:
    """Poll: the consumers under test own their tasks, so there is no event to wait on."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_done_jobs_are_acked_and_later_jobs_come_back(store: Storage) -> None:
    seen: list[tuple[str, int]] = []

    async def handle(job: Job) -> float | None:
        seen.append((job.payload["name"], job.attempts))
        return 0.1 if job.payload["name"] == "later" and job.attempts == 1 else None

    consumers = QueueConsumers(store.queue, QUEUE, handle, _nothing_lost, FAST)
    consumers.start()
    await store.queue.put(QUEUE, {"name": "now"})
    await store.queue.put(QUEUE, {"name": "later"})
    await _eventually(lambda: ("later", 2) in seen)
    await consumers.stop(5)
    assert sorted(seen) == [("later", 1), ("later", 2), ("now", 1)]
    assert await store.queue.depth(QUEUE) == 0


async def test_a_failing_job_is_retried_not_lost(store: Storage) -> None:
    attempts: list[int] = []

    async def handle(job: Job) -> None:
        attempts.append(job.attempts)
        if job.attempts < 3:
            raise RuntimeError("transient")

    consumers = QueueConsumers(store.queue, QUEUE, handle, _nothing_lost, FAST)
    consumers.start()
    await store.queue.put(QUEUE, {"n": 1})
    await _eventually(lambda: 3 in attempts)
    await consumers.stop(5)
    assert attempts == [1, 2, 3]
    assert await store.queue.depth(QUEUE) == 0


async def test_the_sweeper_enqueues_what_the_database_says_is_lost(store: Storage) -> None:
    handled: list[dict[str, Any]] = []
    asked: list[datetime] = []

    async def find_lost(before: datetime) -> list[dict[str, Any]]:
        asked.append(before)
        return [{"lost": 1}] if len(asked) == 1 else []

    async def handle(job: Job) -> None:
        handled.append(job.payload)

    options = ConsumerOptions(concurrency=1, sweep_interval=0.1, sweep_age=timedelta(minutes=1))
    consumers = QueueConsumers(store.queue, QUEUE, handle, find_lost, options)
    consumers.start()
    await _eventually(lambda: handled == [{"lost": 1}] and len(asked) >= 2)
    await consumers.stop(5)
    # the first sweep takes everything due now, later ones only what stayed due a minute
    assert asked[1] < asked[0]


async def test_stop_hands_back_the_job_in_hand(store: Storage) -> None:
    started = asyncio.Event()

    async def handle(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)

    consumers = QueueConsumers(store.queue, QUEUE, handle, _nothing_lost, FAST)
    consumers.start()
    await store.queue.put(QUEUE, {"slow": True})
    await asyncio.wait_for(started.wait(), 10)
    await consumers.stop(0.2)

    again = await store.queue.claim(QUEUE, "another", wait=0)
    assert [job.payload for job in again] == [{"slow": True}], "released at once, not leased"
