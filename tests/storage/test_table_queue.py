"""The table queue (embedded default): leases, acks, releases and concurrent consumers."""

from __future__ import annotations

import asyncio

import pytest

from storage.queues import INCOMING, OUTGOING, Job, TransactionalQueue
from storage.registry import Storage


async def test_put_then_claim_returns_the_job_with_its_payload(store: Storage) -> None:
    job_id = await store.queue.put(INCOMING, {"inbound_id": "abc", "n": 1})

    jobs = await store.queue.claim(INCOMING, "worker-1", wait=0)

    assert [(j.id, j.queue, j.payload, j.attempts) for j in jobs] == [
        (job_id, INCOMING, {"inbound_id": "abc", "n": 1}, 1)
    ]


async def test_a_leased_job_is_not_claimable_by_another_consumer(store: Storage) -> None:
    await store.queue.put(INCOMING, {"n": 1})
    assert len(await store.queue.claim(INCOMING, "worker-1", wait=0)) == 1

    assert await store.queue.claim(INCOMING, "worker-2", wait=0) == []
    assert await store.queue.depth(INCOMING) == 1, "a leased job is still in the queue"


async def test_an_expired_lease_makes_the_job_claimable_again(store: Storage) -> None:
    """A consumer that dies holding a job does not lose it: the lease runs out."""
    job_id = await store.queue.put(INCOMING, {"n": 1})
    [first] = await store.queue.claim(INCOMING, "dies", lease=0.2, wait=0)

    again = await store.queue.claim(INCOMING, "survivor", wait=10)

    assert [(j.id, j.payload, j.attempts) for j in again] == [(job_id, {"n": 1}, 2)]
    assert first.attempts == 1


async def test_ack_removes_the_job_for_good(store: Storage) -> None:
    await store.queue.put(INCOMING, {"n": 1})
    [job] = await store.queue.claim(INCOMING, "worker-1", lease=0.2, wait=0)

    await store.queue.ack(job)

    assert await store.queue.depth(INCOMING) == 0
    await asyncio.sleep(0.3)  # past the lease: an unacked job would be back by now
    assert await store.queue.claim(INCOMING, "worker-2", wait=0) == []


async def test_release_with_delay_hides_the_job_until_the_delay_passes(store: Storage) -> None:
    job_id = await store.queue.put(OUTGOING, {"delivery_id": "d1"})
    [job] = await store.queue.claim(OUTGOING, "worker-1", wait=0)

    await store.queue.release(job, delay=1.0)

    assert await store.queue.claim(OUTGOING, "worker-2", wait=0) == []
    later = await store.queue.claim(OUTGOING, "worker-2", wait=10)
    assert [(j.id, j.attempts) for j in later] == [(job_id, 2)]


async def test_release_without_delay_makes_the_job_claimable_at_once(store: Storage) -> None:
    job_id = await store.queue.put(OUTGOING, {"delivery_id": "d1"})
    [job] = await store.queue.claim(OUTGOING, "worker-1", wait=0)

    await store.queue.release(job)

    again = await store.queue.claim(OUTGOING, "worker-2", wait=0)
    assert [(j.id, j.payload, j.attempts) for j in again] == [(job_id, {"delivery_id": "d1"}, 2)]


async def test_a_waiting_claim_returns_when_a_job_is_put(store: Storage) -> None:
    """A consumer blocked in ``claim`` gets a job put meanwhile, long before its wait ends."""
    waiting = asyncio.create_task(store.queue.claim(INCOMING, "worker-1", wait=10))
    await asyncio.sleep(0.1)  # let the consumer find the queue empty and start waiting
    assert not waiting.done()

    job_id = await store.queue.put(INCOMING, {"n": 1})

    jobs = await asyncio.wait_for(waiting, timeout=5)
    assert [j.id for j in jobs] == [job_id]


async def test_queues_are_independent_by_name(store: Storage) -> None:
    incoming_id = await store.queue.put(INCOMING, {"kind": "in"})
    outgoing_id = await store.queue.put(OUTGOING, {"kind": "out"})

    assert await store.queue.depth(INCOMING) == 1
    assert await store.queue.depth(OUTGOING) == 1
    assert [j.id for j in await store.queue.claim(OUTGOING, "w", wait=0)] == [outgoing_id]
    assert [j.id for j in await store.queue.claim(INCOMING, "w", wait=0)] == [incoming_id]
    assert await store.queue.claim(OUTGOING, "w", wait=0) == []


async def test_concurrent_consumers_claim_every_job_exactly_once(store: Storage) -> None:
    """200 jobs, 4 consumers racing: no job is handed out twice and none is left behind."""
    put_ids = [await store.queue.put(INCOMING, {"n": n}) for n in range(200)]

    async def consume(name: str) -> list[Job]:
        claimed: list[Job] = []
        while jobs := await store.queue.claim(INCOMING, name, limit=7, wait=0):
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
        await store.queue.ack(job)
    assert await store.queue.depth(INCOMING) == 0


async def test_put_many_hints_several_queues_at_once(store: Storage) -> None:
    await store.queue.put_many([(INCOMING, {"n": 1}), (OUTGOING, {"n": 2}), (INCOMING, {"n": 3})])

    incoming = await store.queue.claim(INCOMING, "w", wait=0)
    outgoing = await store.queue.claim(OUTGOING, "w", wait=0)
    assert sorted(j.payload["n"] for j in incoming) == [1, 3]
    assert [j.payload for j in outgoing] == [{"n": 2}]


async def test_jobs_put_in_a_transaction_commit_or_roll_back_with_it(store: Storage) -> None:
    """The table queue lives in the metadata database: a hint written in the caller's
    transaction exists exactly when the rows it points at do."""
    assert isinstance(store.queue, TransactionalQueue)
    with pytest.raises(RuntimeError):
        async with store.db.session() as session, session.begin():
            await store.queue.put_in(session, [(OUTGOING, {"delivery_id": "rolled-back"})])
            raise RuntimeError("the caller's transaction fails")
    assert await store.queue.depth(OUTGOING) == 0

    async with store.db.session() as session, session.begin():
        await store.queue.put_in(session, [(OUTGOING, {"delivery_id": "kept"})])
    jobs = await store.queue.claim(OUTGOING, "w", wait=0)
    assert [j.payload for j in jobs] == [{"delivery_id": "kept"}]


async def test_a_waiting_claim_gets_a_job_put_in_a_transaction_once_it_commits(
    store: Storage,
) -> None:
    assert isinstance(store.queue, TransactionalQueue)
    waiting = asyncio.create_task(store.queue.claim(OUTGOING, "w", wait=30))
    await asyncio.sleep(0.1)  # the consumer finds the queue empty and waits
    async with store.db.session() as session, session.begin():
        await store.queue.put_in(session, [(OUTGOING, {"delivery_id": "d1"})])

    jobs = await asyncio.wait_for(waiting, timeout=10)
    assert [j.payload for j in jobs] == [{"delivery_id": "d1"}]
