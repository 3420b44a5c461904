"""FLUSHALL on Redis loses nothing (issue 3 point 12, issue 4 point 1).

The roles run as separate processes with ``POSTROOM_REDIS_URL`` set, so queue hints live in
Redis Streams. Redis is then emptied for real (FLUSHALL: the whole server, which is why this
test owns Redis while it runs); the database still says which mail is pending, and the
processor's sweeper enqueues it again. Every message is filed, and filed once.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.platform import Platform
from tests.support.redis import REDIS_URL, require_redis, unique_prefix

# serial: FLUSHALL empties the shared Redis, so nothing else may run at the same moment
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

BOB = "bob@example.test"


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    require_redis()
    opened = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield opened
    opened.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    chosen = unique_prefix()
    yield chosen
    keys = list(client.scan_iter(match=f"{chosen}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def split(own_database_url: str, tmp_path: Path, prefix: str) -> Iterator[Platform]:
    platform = Platform(
        tmp_path,
        own_database_url,
        extra_env={
            "POSTROOM_REDIS_URL": REDIS_URL,
            "POSTROOM_REDIS_PREFIX": prefix,
            "POSTROOM_SWEEP_INTERVAL_SECONDS": "0.5",
            "POSTROOM_SWEEP_AGE_SECONDS": "1",
        },
    )
    platform.setup("example.test", BOB)
    yield platform
    platform.stop()


def _send(platform: Platform, subjects: list[str]) -> None:
    with platform.smtp() as smtp:
        for subject in subjects:
            raw = f"From: zed@remote.test\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nhi\r\n"
            smtp.sendmail("zed@remote.test", [BOB], raw.encode())


def _filed_once(platform: Platform, token: str, subjects: list[str]) -> None:
    """Every subject arrives; a moment later (several sweeps) none has arrived twice."""
    for subject in subjects:
        platform.wait_for(token, "inbox", subject, timeout=30)
    time.sleep(2)  # four sweep intervals: a duplicate filing would show by now
    listed = [m["subject"] for m in platform.messages(token, "inbox")]
    assert sorted(s for s in listed if s in subjects) == sorted(subjects)


def test_flushall_loses_no_mail(split: Platform, client: redis.Redis, prefix: str) -> None:
    roles = {role: split.start_role(role) for role in ("smtp-in", "gateway")}
    run = uuid.uuid4().hex[:6]
    before = [f"before flush {n} {run}" for n in range(20)]
    _send(split, before)

    stream = f"{prefix}queue:incoming"
    assert client.xlen(stream) == 20, "every accepted message left a hint in the Redis stream"
    client.flushall()
    assert client.exists(stream) == 0

    token = split.token(BOB)
    assert split.messages(token, "inbox") == [], "nothing files mail while no processor runs"
    roles["processor"] = split.start_role("processor")
    _filed_once(split, token, before)

    # again with the processor running: its consumers lose their group mid-wait and go on
    client.flushall()
    after = [f"after flush {n} {run}" for n in range(5)]
    _send(split, after)
    _filed_once(split, token, after)
    assert len(split.messages(token, "inbox")) == 25

    for role, process in roles.items():
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, f"{role} did not stop cleanly"
    log = (split.data_dir / "processor.log").read_text()
    assert "Traceback" not in log, log
