"""A receiver that fails one transaction in five still gets every message, each once.

The chaos peer (tests/support/chaos.py) answers 421 (and hangs up), 451, or drops the
connection without a word, at random, for 20% of the messages; everything else gets a 250. A
message it dropped was never acknowledged, so delivering it again is right; a duplicate would
mean we sent again after a 250 we had seen, which only a worker crash between the 250 and the
commit can cause (that window is exercised in tests/smtp_out/test_worker_crash.py and
tests/e2e/test_distributed_faults.py), so here the count must be zero.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from smtp_out.worker import DeliveryWorker, build_policy
from storage.db.models import DeliveryRecipient
from tests.smtp_out.conftest import MX1, Mail, Peers
from tests.support.chaos import ChaosReceiver
from tests.support.services import postgres_database

MESSAGES = int(os.environ.get("CHAOS_MESSAGES", "1000"))
FAILURE_RATE = 0.2


@pytest.fixture(params=["postgresql"])
def own_database_url(tmp_path: Path) -> Iterator[str]:
    """PostgreSQL only: 1000 messages with real fsyncs take minutes on SQLite's single writer,
    and this is a test of delivery, not of the engine (both engines run every other test here).
    """
    with postgres_database() as url:
        yield url


@pytest.mark.timeout(600)
async def test_every_message_arrives_exactly_once_through_chaos(mail: Mail, peers: Peers) -> None:
    chaos = ChaosReceiver(seed=20261123, failure_rate=FAILURE_RATE)
    controller = Controller(chaos, hostname=MX1, port=peers.port, ready_timeout=10)
    await asyncio.to_thread(controller.start)
    try:
        began = time.monotonic()
        gate = asyncio.Semaphore(16)

        async def send(n: int) -> None:
            async with gate:
                await mail.send(f"dave{n % 7}@remote.test", subject=f"chaos #{n}")

        await asyncio.gather(*(send(n) for n in range(MESSAGES)))
        print(f"\nqueued {MESSAGES} in {time.monotonic() - began:.1f} s")
        began = time.monotonic()

        def fast_retries(worker: DeliveryWorker) -> None:
            settings = mail.store.settings.model_copy(
                update={
                    "retry_first_seconds": 0.05,
                    "retry_max_seconds": 0.2,
                    "delivery_connections_per_host": 4,
                }
            )
            worker.policy = build_policy(settings)
            worker.consumers.options = replace(
                worker.consumers.options, retry_delay=0.05, concurrency=4
            )

        async def all_delivered() -> bool:
            await asyncio.sleep(0.5)  # a count per half second, not a scan per poll
            async with mail.store.db.session() as session:
                waiting = await session.scalar(
                    select(func.count())
                    .select_from(DeliveryRecipient)
                    .where(DeliveryRecipient.status != "delivered")
                )
            return waiting == 0

        await mail.run_worker(all_delivered, configure=fast_retries, limit=300)
        print(f"delivered in {time.monotonic() - began:.1f} s")
    finally:
        await asyncio.to_thread(controller.stop)

    expected = {f"chaos #{n}" for n in range(MESSAGES)}
    duplicates = sum(count - 1 for count in chaos.accepted.values())
    print(
        f"\nchaos: {MESSAGES} messages, failures injected {dict(chaos.failures)}, "
        f"duplicates {duplicates}"
    )
    assert set(chaos.accepted) == expected, "every message arrived"
    assert sum(chaos.failures.values()) > MESSAGES * FAILURE_RATE * 0.5, "the chaos happened"
    assert duplicates == 0
    recipients: list[DeliveryRecipient] = await mail.recipients(local=False)
    assert len(recipients) == MESSAGES
    assert all(r.remote_reply == "250 2.0.0 Ok" for r in recipients)
