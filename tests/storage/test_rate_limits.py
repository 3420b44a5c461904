"""Counting one request against several windows at once, in process and in Redis alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter

from storage.rate_limits import memory_counters, redis_counters, spend_in_order
from tests.support.redis import REDIS_URL, delete_prefix, require_redis, unique_prefix


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    if request.param == "memory":
        yield memory_counters("memory://", "")
        return
    require_redis()
    prefix = unique_prefix()
    try:
        yield redis_counters(REDIS_URL, prefix)
    finally:
        await delete_prefix(prefix)


def _hits(user: RateLimitItem, ip: RateLimitItem) -> list[tuple[RateLimitItem, list[str]]]:
    return [(user, ["read", "user", "ann"]), (ip, ["read", "IP address", "10.0.0.1"])]


async def test_the_first_window_over_refuses_and_later_ones_are_not_counted(
    counters: Storage,
) -> None:
    user, ip = parse("2/hour"), parse("5/hour")
    limiter = FixedWindowRateLimiter(counters)
    outcomes = [await spend_in_order(counters, _hits(user, ip)) for _ in range(3)]
    assert outcomes == [None, None, 0]  # the third request is over the user's window
    # As limits' own hits would leave them: the user's window counted the refused hit too,
    # the IP address's window did not see it.
    assert (await limiter.get_window_stats(user, "read", "user", "ann")).remaining == 0
    assert (await limiter.get_window_stats(ip, "read", "IP address", "10.0.0.1")).remaining == 3
    assert not await limiter.test(user, "read", "user", "ann")


async def test_a_later_window_over_is_named_by_its_index(counters: Storage) -> None:
    user, ip = parse("10/hour"), parse("1/hour")
    assert await spend_in_order(counters, _hits(user, ip)) is None
    assert await spend_in_order(counters, _hits(user, ip)) == 1
    limiter = FixedWindowRateLimiter(counters)
    assert (await limiter.get_window_stats(user, "read", "user", "ann")).remaining == 8


async def test_a_window_expires_as_limits_sets_it(counters: Storage) -> None:
    """The first hit of a window sets its expiry: the reset time limits reports is ahead."""
    item = parse("3/minute")
    await spend_in_order(counters, [(item, ["send", "user", "bob"])])
    stats = await FixedWindowRateLimiter(counters).get_window_stats(item, "send", "user", "bob")
    assert stats.remaining == 2
    assert time.time() < stats.reset_time <= time.time() + 60


async def test_spends_arriving_together_are_each_counted_in_their_own_order(
    counters: Storage,
) -> None:
    """On Redis, concurrent spends share one pipeline; each is still its own atomic script:
    exactly the budget passes, and a refused spend leaves its later windows uncounted."""
    user, ip = parse("4/hour"), parse("100/hour")
    ann = _hits(user, ip)
    bob = [(user, ["read", "user", "bob"]), (ip, ["read", "IP address", "10.0.0.1"])]

    outcomes = await asyncio.gather(*(spend_in_order(counters, who) for who in [ann, bob] * 10))

    assert sorted(outcomes[0::2], key=str) == [0] * 6 + [None] * 4
    assert sorted(outcomes[1::2], key=str) == [0] * 6 + [None] * 4
    limiter = FixedWindowRateLimiter(counters)
    ip_stats = await limiter.get_window_stats(ip, "read", "IP address", "10.0.0.1")
    assert ip_stats.remaining == 100 - 8  # only the spends their users' windows let through
