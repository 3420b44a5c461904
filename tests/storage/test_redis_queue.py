"""The Redis Streams queue: the table queue's behaviours, plus what Redis adds.

Each test gets a random key prefix on the machine's Redis and deletes only its own keys. A
"crashed" consumer is one that claims and never acks; XAUTOCLAIM hands its job to another
consumer once the lease has run out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from postroom.settings import Settings
from storage.queues import INCOMING, OUTGOING, Job
from storage.queues.consumers import ConsumerOptions, QueueConsumers
from storage.queues.redis_streams import RedisStreamQueue
from storage.registry import open_storage
from tests.support.redis import REDIS_URL, delete_prefix


@pytest.fixture
async def queue(prefix: str) -> AsyncIterator[RedisStreamQueue]:
    opened = RedisStreamQueue(REDIS_URL, prefix)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    opened = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield opened
    finally:
        await opened.aclose()


# -- the behaviours every queue backend shares (see test_table_queue.py) ----------------------


async def test_put_then_claim_returns_the_job_with_its_payload(queue: RedisStreamQueue) -> None:
    job_id = await queue.put(INCOMING, {"inbound_id": "abc", "n": 1})

    jobs = await queue.claim(INCOMING, "worker-1", wait=0)

    assert [(j.id, j.queue, j.payload, j.attempts) for j in jobs] == [
        (job_id, INCOMING, {"inbound_id": "abc", "n": 1}, 1)
    ]


async def test_a_leased_job_is_not_claimable_by_another_consumer(queue: RedisStreamQueue) -> None:
    await queue.put(INCOMING, {"n": 1})
    assert len(await queue.claim(INCOMING, "worker-1", wait=0)) == 1

    assert await queue.claim(INCOMING, "worker-2", wait=0) == []
    assert await queue.depth(INCOMING) == 1, "a leased job is still in the queue"


async def test_an_expired_lease_makes_the_job_claimable_again(queue: RedisStreamQueue) -> None:
    """A consumer that dies holding a job does not lose it: XAUTOCLAIM takes it over."""
    job_id = await queue.put(INCOMING, {"n": 1})
    [first] = await queue.claim(INCOMING, "dies", lease=0.2, wait=0)

    again = await queue.claim(INCOMING, "survivor", lease=0.2, wait=10)

    assert [(j.id, j.payload, j.attempts) for j in again] == [(job_id, {"n": 1}, 2)]
    assert first.attempts == 1


async def test_attempts_grow_with_every_takeover(queue: RedisStreamQueue) -> None:
    await queue.put(INCOMING, {"n": 1})
    seen = []
    for name in ("first", "second", "third"):
        [job] = await queue.claim(INCOMING, name, lease=0.1, wait=10)
        seen.append(job.attempts)  # and "crash": never ack

    assert seen == [1, 2, 3]
    assert await queue.depth(INCOMING) == 1


async def test_a_lease_not_yet_expired_is_left_alone(queue: RedisStreamQueue) -> None:
    await queue.put(INCOMING, {"n": 1})
    await queue.claim(INCOMING, "busy", lease=30, wait=0)

    assert await queue.claim(INCOMING, "other", lease=30, wait=0.7) == []


async def test_ack_removes_the_job_for_good(queue: RedisStreamQueue) -> None:
    await queue.put(INCOMING, {"n": 1})
    [job] = await queue.claim(INCOMING, "worker-1", lease=0.2, wait=0)

    await queue.ack(job)

    assert await queue.depth(INCOMING) == 0
    await asyncio.sleep(0.3)  # past the lease: an unacked job would be back by now
    assert await queue.claim(INCOMING, "worker-2", lease=0.2, wait=0) == []


async def test_release_with_delay_hides_the_job_until_the_delay_passes(
    queue: RedisStreamQueue,
) -> None:
    job_id = await queue.put(OUTGOING, {"delivery_id": "d1"})
    [job] = await queue.claim(OUTGOING, "worker-1", wait=0)

    await queue.release(job, delay=1.0)

    assert await queue.depth(OUTGOING) == 1, "a delayed job still counts"
    assert await queue.claim(OUTGOING, "worker-2", wait=0) == []
    later = await queue.claim(OUTGOING, "worker-2", wait=10)
    assert [(j.id, j.attempts) for j in later] == [(job_id, 2)]


async def test_release_without_delay_makes_the_job_claimable_at_once(
    queue: RedisStreamQueue,
) -> None:
    job_id = await queue.put(OUTGOING, {"delivery_id": "d1"})
    [job] = await queue.claim(OUTGOING, "worker-1", wait=0)

    await queue.release(job)

    again = await queue.claim(OUTGOING, "worker-2", wait=0)
    assert [(j.id, j.payload, j.attempts) for j in again] == [(job_id, {"delivery_id": "d1"}, 2)]
    assert await queue.depth(OUTGOING) == 1


async def test_put_with_delay_hides_the_job_until_it_is_due(queue: RedisStreamQueue) -> None:
    job_id = await queue.put(OUTGOING, {"delivery_id": "d1"}, delay=0.5)

    assert await queue.claim(OUTGOING, "worker-1", wait=0) == []
    later = await queue.claim(OUTGOING, "worker-1", wait=10)
    assert [(j.id, j.attempts) for j in later] == [(job_id, 1)]


async def test_a_waiting_claim_returns_when_a_job_is_put(queue: RedisStreamQueue) -> None:
    """A consumer blocked in ``claim`` gets a job put meanwhile, long before its wait ends."""
    waiting = asyncio.create_task(queue.claim(INCOMING, "worker-1", wait=10))
    await asyncio.sleep(0.1)  # let the consumer find the queue empty and start waiting
    assert not waiting.done()

    job_id = await queue.put(INCOMING, {"n": 1})

    jobs = await asyncio.wait_for(waiting, timeout=5)
    assert [j.id for j in jobs] == [job_id]


async def test_queues_are_independent_by_name(queue: RedisStreamQueue) -> None:
    incoming_id = await queue.put(INCOMING, {"kind": "in"})
    outgoing_id = await queue.put(OUTGOING, {"kind": "out"})

    assert await queue.depth(INCOMING) == 1
    assert await queue.depth(OUTGOING) == 1
    assert [j.id for j in await queue.claim(OUTGOING, "w", wait=0)] == [outgoing_id]
    assert [j.id for j in await queue.claim(INCOMING, "w", wait=0)] == [incoming_id]
    assert await queue.claim(OUTGOING, "w", wait=0) == []


async def test_put_many_hints_several_queues_in_one_round_trip(queue: RedisStreamQueue) -> None:
    await queue.put_many([(INCOMING, {"n": 1}), (OUTGOING, {"n": 2}), (INCOMING, {"n": 3})])

    incoming = await queue.claim(INCOMING, "w", wait=0)
    outgoing = await queue.claim(OUTGOING, "w", wait=0)
    assert [j.payload["n"] for j in incoming] == [1, 3]
    assert [j.payload for j in outgoing] == [{"n": 2}]
    assert len({j.id for j in incoming + outgoing}) == 3


async def test_concurrent_consumers_claim_every_job_exactly_once(queue: RedisStreamQueue) -> None:
    """200 jobs, 4 consumers racing: no job is handed out twice and none is left behind."""
    put_ids = [await queue.put(INCOMING, {"n": n}) for n in range(200)]

    async def consume(name: str) -> list[Job]:
        claimed: list[Job] = []
        while jobs := await queue.claim(INCOMING, name, limit=7, wait=0):
            claimed.extend(jobs)
        return claimed

    results = await asyncio.gather(*(consume(f"worker-{i}") for i in range(4)))
    claimed = [job for jobs in results for job in jobs]

    claimed_ids = [job.id for job in claimed]
    assert len(claimed_ids) == len(set(claimed_ids)), "a job was claimed twice"
    assert sorted(claimed_ids) == sorted(put_ids), "a job was never claimed"
    assert sorted(job.payload["n"] for job in claimed) == list(range(200))
    assert all(job.attempts == 1 for job in claimed)

    for job in claimed:
        await queue.ack(job)
    assert await queue.depth(INCOMING) == 0


# -- what Redis adds -------------------------------------------------------------------------


async def test_a_release_after_a_takeover_finished_the_job_does_not_revive_it(
    queue: RedisStreamQueue,
) -> None:
    """The slow consumer's late release must not hand back work another consumer completed."""
    await queue.put(INCOMING, {"n": 1})
    [slow] = await queue.claim(INCOMING, "slow", lease=0.1, wait=0)
    [fast] = await queue.claim(INCOMING, "fast", lease=0.1, wait=10)
    await queue.ack(fast)

    await queue.release(slow)

    assert await queue.depth(INCOMING) == 0
    assert await queue.claim(INCOMING, "any", lease=0.1, wait=0.3) == []


async def test_keys_live_under_the_prefix(
    queue: RedisStreamQueue, prefix: str, client: aioredis.Redis
) -> None:
    await queue.put(INCOMING, {"n": 1})
    await queue.put(INCOMING, {"n": 2}, delay=60)

    keys = {key async for key in client.scan_iter(match=f"{prefix}*")}

    assert keys == {f"{prefix}queue:incoming", f"{prefix}queue:incoming:delayed"}


async def test_an_emptied_redis_does_not_break_claim_ack_or_release(
    queue: RedisStreamQueue, prefix: str
) -> None:
    """After the keys vanish (as on FLUSHALL) the group is made again; no NOGROUP escapes.

    A job released while the group is missing is handed back; one released after a claim has
    made the group again is indistinguishable from a job another consumer finished, so it is
    dropped and the sweeper, which asks the database, brings it back if it is still due.
    """
    await queue.put(INCOMING, {"n": 1})
    [held] = await queue.claim(INCOMING, "w", wait=0)
    await queue.put(INCOMING, {"n": 2})
    [also_held] = await queue.claim(INCOMING, "w", wait=0)

    await delete_prefix(prefix)

    assert await queue.depth(INCOMING) == 0
    await queue.ack(held)  # the entry is gone: nothing to do, and no error
    await queue.release(also_held)  # nobody holds it any more: handed back
    job_id = await queue.put(INCOMING, {"n": 3})
    claimed = await queue.claim(INCOMING, "w", wait=0)
    assert sorted((j.payload["n"], j.attempts) for j in claimed) == [(2, 2), (3, 1)]
    assert job_id in {j.id for j in claimed}


async def test_a_claim_waiting_while_redis_is_emptied_keeps_working(
    queue: RedisStreamQueue, prefix: str
) -> None:
    await queue.claim(INCOMING, "w", wait=0)  # the group exists
    waiting = asyncio.create_task(queue.claim(INCOMING, "w", wait=10))
    await asyncio.sleep(0.1)

    await delete_prefix(prefix)
    await asyncio.sleep(0.1)
    job_id = await queue.put(INCOMING, {"n": 1})

    jobs = await asyncio.wait_for(waiting, timeout=5)
    assert [j.id for j in jobs] == [job_id]


async def test_ack_refuses_a_job_that_did_not_come_from_claim(queue: RedisStreamQueue) -> None:
    job_id = await queue.put(INCOMING, {"n": 1})

    with pytest.raises(TypeError, match="did not come from"):
        await queue.ack(Job(id=job_id, queue=INCOMING, payload={"n": 1}, attempts=1))


async def test_a_redis_url_picks_this_backend_with_the_prefix_from_settings(
    tmp_path: Path, prefix: str
) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_URL, redis_prefix=prefix)
    store = open_storage(settings)
    try:
        assert isinstance(store.queue, RedisStreamQueue)
        assert store.queue.prefix == prefix
    finally:
        await store.close()


async def test_the_consumer_engine_runs_on_this_backend(queue: RedisStreamQueue) -> None:
    """Done, later and failing jobs through ``QueueConsumers``, as the roles run them."""
    seen: list[tuple[str, int]] = []

    async def handle(job: Job) -> float | None:
        name = str(job.payload["name"])
        seen.append((name, job.attempts))
        if name == "failing" and job.attempts < 3:
            raise RuntimeError("transient")
        return 0.1 if name == "later" and job.attempts == 1 else None

    async def nothing_lost(_before: datetime) -> list[dict[str, Any]]:
        return []

    options = ConsumerOptions(concurrency=2, lease=30.0, sweep_interval=0.1, retry_delay=0.1)
    consumers = QueueConsumers(queue, "work", handle, nothing_lost, options)
    consumers.start()
    for name in ("now", "later", "failing"):
        await queue.put("work", {"name": name})
    async with asyncio.timeout(10):
        while ("later", 2) not in seen or ("failing", 3) not in seen:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await consumers.stop(5)

    assert sorted(seen) == [
        ("failing", 1),
        ("failing", 2),
        ("failing", 3),
        ("later", 1),
        ("later", 2),
        ("now", 1),
    ]
    assert await queue.depth("work") == 0
