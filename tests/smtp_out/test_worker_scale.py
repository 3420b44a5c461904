"""Several ``postroom run smtp-out`` processes share one queue (issue 4 point 2).

Two real worker processes, told apart by the EHLO name each is given, deliver a batch sent
through the API to one recording receiver, on the table queue and on Redis Streams: every
message arrives exactly once and both workers took part. Then one worker gets SIGTERM while
it has deliveries in flight: it starts nothing new, finishes what it had within the grace
period and exits cleanly, and the other worker delivers the rest, still each message once.

PostgreSQL only: several processes writing at once is what a production install does, and
SQLite's single writer is tested everywhere else.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from storage.registry import open_database
from tests.smtp_out.conftest import MX1
from tests.support.platform import Platform
from tests.support.redis import REDIS_URL, delete_prefix, require_redis, unique_prefix
from tests.support.services import postgres_database

WORKERS = ("worker-a.postroom.test", "worker-b.postroom.test")
CONCURRENCY = 2
"""Deliveries each worker runs at once: at most this many may still start after SIGTERM."""


@dataclass
class Transaction:
    helo: str
    subject: str
    mail_at: float
    """``time.monotonic()`` when MAIL FROM arrived: the transaction had begun."""


@dataclass
class Receiver:
    """Records each accepted message with the worker that sent it; DATA takes ``stall`` s."""

    stall: float = 0.05
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: list[Transaction] = field(default_factory=list)
    in_data: Counter[str] = field(default_factory=Counter)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        session.mail_at = time.monotonic()
        return "250 2.1.0 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.in_data[session.host_name] += 1
        await asyncio.sleep(self.stall)
        subject = next(
            line.decode()
            for line in envelope.content.split(b"\r\n")
            if line.startswith(b"Subject: ")
        )
        with self.lock:
            self.in_data[session.host_name] -= 1
            self.accepted.append(Transaction(session.host_name, subject, session.mail_at))
        return "250 2.0.0 Ok"

    def subjects(self) -> Counter[str]:
        with self.lock:
            return Counter(t.subject for t in self.accepted)

    def by_worker(self) -> Counter[str]:
        with self.lock:
            return Counter(t.helo for t in self.accepted)


@pytest.fixture(params=["table", "redis"])
def queue_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "table":
        yield {}
        return
    require_redis()
    prefix = unique_prefix()
    yield {"POSTROOM_REDIS_URL": REDIS_URL, "POSTROOM_REDIS_PREFIX": prefix}
    asyncio.run(delete_prefix(prefix))


async def _undelivered(database_url: str) -> int:
    db = open_database(database_url)
    try:
        async with db.engine.connect() as connection:
            result = await connection.execute(
                text("SELECT count(*) FROM delivery_recipients WHERE status != 'delivered'")
            )
            return int(result.scalar_one())
    finally:
        await db.close()


def _send(platform: Platform, token: str, subjects: list[str]) -> None:
    with platform.api(token) as api:
        for n, subject in enumerate(subjects):
            response = api.post(
                "/send", json={"to": [f"dave{n}@remote.test"], "subject": subject, "text": "hi"}
            )
            assert response.status_code == 202, response.text


def _wait_delivered(receiver: Receiver, subjects: list[str], database_url: str) -> None:
    deadline = time.monotonic() + 60
    while not (
        set(subjects) <= set(receiver.subjects()) and asyncio.run(_undelivered(database_url)) == 0
    ):
        assert time.monotonic() < deadline, (
            f"{len(set(subjects) & set(receiver.subjects()))} of {len(subjects)} delivered"
        )
        time.sleep(0.2)


def test_workers_share_the_queue_and_one_stops_gracefully(
    tmp_path: Path, dns_port: int, delivery_port: int, queue_env: dict[str, str]
) -> None:
    receiver = Receiver()
    controller = Controller(receiver, hostname=MX1, port=delivery_port, ready_timeout=10)
    controller.start()
    run = uuid.uuid4().hex[:6]
    with postgres_database() as database_url:
        platform = Platform(
            tmp_path,
            database_url,
            extra_env={
                "POSTROOM_DNS_NAMESERVERS": f"127.0.0.1:{dns_port}",
                "POSTROOM_DELIVERY_PORT": str(delivery_port),
                "POSTROOM_DELIVERY_CONCURRENCY": str(CONCURRENCY),
                "POSTROOM_SHUTDOWN_GRACE_SECONDS": "8",
                "POSTROOM_RATE_SEND_USER": "",
                **queue_env,
            },
        )
        try:
            platform.setup("postroom.test", "alice@postroom.test")
            platform.start_role("gateway")
            workers = {}
            for name in WORKERS:
                platform.env["POSTROOM_HOSTNAME"] = name  # its EHLO: who sent what
                workers[name] = platform.start_role("smtp-out")
            token = platform.token("alice@postroom.test")

            # both workers at work on one batch, each message once
            first = [f"Subject: shared {n} {run}" for n in range(16)]
            _send(platform, token, [s.removeprefix("Subject: ") for s in first])
            _wait_delivered(receiver, first, database_url)
            assert receiver.subjects() == Counter(first), "each message exactly once"
            assert set(receiver.by_worker()) == set(WORKERS), receiver.by_worker()

            # SIGTERM to one worker with deliveries in flight
            receiver.stall = 1.0
            second = [f"Subject: stopping {n} {run}" for n in range(16)]
            _send(platform, token, [s.removeprefix("Subject: ") for s in second])
            stopping, other = WORKERS
            deadline = time.monotonic() + 30
            while receiver.in_data[stopping] == 0:
                assert time.monotonic() < deadline, "the worker never had a delivery in flight"
                time.sleep(0.01)
            signalled = time.monotonic()
            workers[stopping].send_signal(signal.SIGTERM)
            assert workers[stopping].wait(20) == 0, "SIGTERM: a clean exit within the grace"
            _wait_delivered(receiver, second, database_url)
        finally:
            platform.stop()
            controller.stop()

    assert receiver.subjects() == Counter(first + second), "each message exactly once"
    after = [t for t in receiver.accepted if t.subject in second and t.helo == stopping]
    began_after = [t for t in after if t.mail_at > signalled]
    print(
        f"\nworkers: first batch {dict(receiver.by_worker())}; after SIGTERM the stopping worker"
        f" finished {len(after)} (begun after the signal: {len(began_after)})"
    )
    assert after, "the in-flight delivery was finished, not dropped"
    # claimed before the signal and already on its way: at most one per consumer
    assert len(began_after) <= CONCURRENCY, "stopped fetching"
    assert any(t.helo == other for t in receiver.accepted if t.subject in second)
    log = (tmp_path / "smtp-out.log").read_text()
    assert "Traceback" not in log, log
