"""The retry schedule and how recipient results add up to a delivery's status."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from smtp_out.attempt import overall_status
from smtp_out.backoff import RetrySchedule

SCHEDULE = RetrySchedule()


def test_first_retry_after_about_a_minute_then_doubling() -> None:
    assert [SCHEDULE.delay(n, lambda: 0.0) for n in range(1, 6)] == [60, 120, 240, 480, 960]


def test_capped_at_an_hour() -> None:
    assert SCHEDULE.delay(7, lambda: 0.0) == 3600
    assert SCHEDULE.delay(10_000, lambda: 0.0) == 3600


def test_jitter_only_shortens() -> None:
    assert SCHEDULE.delay(1, lambda: 1.0) == pytest.approx(48.0)
    rng = random.Random(7)
    for attempts in range(1, 30):
        base = min(3600.0, 60.0 * 2 ** (attempts - 1))
        assert 0.8 * base <= SCHEDULE.delay(attempts, rng.random) <= base


def test_parameters() -> None:
    schedule = RetrySchedule(first=10, factor=3, cap=100, jitter=0)
    assert [schedule.delay(n) for n in range(1, 5)] == [10, 30, 90, 100]


def test_gives_up_after_five_days() -> None:
    queued = datetime(2024, 1, 1, tzinfo=UTC)
    assert not SCHEDULE.expired(queued, queued + timedelta(days=4, hours=23))
    assert SCHEDULE.expired(queued, queued + timedelta(days=5))
    assert SCHEDULE.describe_limit() == "5 days"
    assert RetrySchedule(give_up_after=timedelta(hours=6)).describe_limit() == "6:00:00"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["delivered", "delivered"], "delivered"),
        (["bounced"], "bounced"),
        (["delivered", "bounced"], "partial"),
        (["delivered", "deferred", "bounced"], "deferred"),
        (["queued", "delivered"], "deferred"),
    ],
)
def test_delivery_status_from_recipients(statuses: list[str], expected: str) -> None:
    assert overall_status(statuses) == expected
