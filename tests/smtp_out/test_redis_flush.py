"""FLUSHALL on Redis loses no outgoing mail (issue 4 point 1).

The outbound twin of tests/e2e/test_redis_flush.py: the roles run as processes with
``POSTROOM_REDIS_URL`` set, so delivery hints live in Redis Streams, and Redis is emptied for
real twice: once while mail waits for a worker that is not running yet, once while the running
worker holds deferred deliveries whose retry hints sit in the delayed set. The delivery rows
still say what is due, the smtp-out sweeper enqueues it again, and every message reaches the
receiver exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller
from sqlalchemy import text

from storage.registry import open_database
from tests.smtp_out.conftest import MX1
from tests.support.platform import Platform
from tests.support.redis import REDIS_URL, require_redis, unique_prefix
from tests.support.services import postgres_database

# serial: FLUSHALL empties the shared Redis, so nothing else may run at the same moment
pytestmark = [pytest.mark.e2e, pytest.mark.serial]


class Receiver:
    def __init__(self) -> None:
        self.subjects: Counter[str] = Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        subject = next(
            line.decode()
            for line in envelope.content.split(b"\r\n")
            if line.startswith(b"Subject: ")
        )
        self.subjects[subject.removeprefix("Subject: ")] += 1
        return "250 2.0.0 Ok"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    require_redis()
    opened = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield opened
    opened.close()


async def _statuses(database_url: str) -> Counter[str]:
    db = open_database(database_url)
    try:
        async with db.engine.connect() as connection:
            rows = await connection.execute(text("SELECT status FROM delivery_recipients"))
            return Counter(str(row[0]) for row in rows)
    finally:
        await db.close()


def _wait(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_flushall_loses_no_outgoing_mail(
    tmp_path: Path, dns_port: int, delivery_port: int, client: redis.Redis
) -> None:
    prefix = unique_prefix()
    receiver = Receiver()
    controller = Controller(receiver, hostname=MX1, port=delivery_port, ready_timeout=10)
    subjects = [f"flushed {n} {uuid.uuid4().hex[:6]}" for n in range(8)]
    with postgres_database() as database_url:
        platform = Platform(
            tmp_path,
            database_url,
            extra_env={
                "POSTROOM_REDIS_URL": REDIS_URL,
                "POSTROOM_REDIS_PREFIX": prefix,
                "POSTROOM_DNS_NAMESERVERS": f"127.0.0.1:{dns_port}",
                "POSTROOM_DELIVERY_PORT": str(delivery_port),
                "POSTROOM_SWEEP_INTERVAL_SECONDS": "0.5",
                "POSTROOM_SWEEP_AGE_SECONDS": "1",
                "POSTROOM_RETRY_FIRST_SECONDS": "1",
                "POSTROOM_RETRY_MAX_SECONDS": "2",
            },
        )
        started = False
        try:
            platform.setup("postroom.test", "alice@postroom.test")
            platform.start_role("gateway")
            token = platform.token("alice@postroom.test")
            with platform.api(token) as api:
                for n, subject in enumerate(subjects):
                    response = api.post(
                        "/send",
                        json={"to": [f"dave{n}@remote.test"], "subject": subject, "text": "hi"},
                    )
                    assert response.status_code == 202, response.text

            # 1. flushed before any worker ran: only the delivery rows remember the mail
            stream = f"{prefix}queue:outgoing"
            assert client.xlen(stream) == len(subjects), "each send left a hint in the stream"
            client.flushall()
            worker = platform.start_role("smtp-out")  # no receiver yet: everything defers

            def all_deferred() -> bool:
                return asyncio.run(_statuses(database_url)) == {"deferred": len(subjects)}

            _wait(all_deferred, "the sweeper found the flushed deliveries and tried them")

            # 2. flushed while the worker holds deferred deliveries: their retry hints (in the
            # delayed set, or back in the stream) go too
            client.flushall()
            controller.start()
            started = True

            def all_delivered() -> bool:
                return asyncio.run(_statuses(database_url)) == {"delivered": len(subjects)}

            _wait(all_delivered, "every deferred delivery was retried after the flush")
            time.sleep(2)  # four sweep intervals: a duplicate would show by now
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(15) == 0, "smtp-out did not stop cleanly"
        finally:
            platform.stop()
            if started:
                controller.stop()
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)

    assert receiver.subjects == Counter(subjects), "every message arrived, each once"
    log = (tmp_path / "smtp-out.log").read_text()
    assert "Traceback" not in log, log
