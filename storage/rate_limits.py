"""Rate-limit counters shared by every role: delivery rates, AUTH failures, API budgets.

Counters live in the ``limits`` package's storage, opened by :func:`storage.registry.
open_limit_storage`: in process by default, in Redis when ``POSTROOM_REDIS_URL`` is set, so
several processes share one budget. Rates are written as the ``limits`` package parses them
(``100/minute``, ``500/day``, ``10/second;1000/hour`` for several at once).

:func:`spend_in_order` counts one request against several fixed windows (a user's and an IP
address's) in one Redis round trip instead of one per window: the ``limits`` package's own
increment-and-expire, for every counter in a single script, under its key names, so its
``get_window_stats`` and every other process read the same counters. Requests spending at the
same moment share a pipeline (:func:`_redis_spends`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from weakref import WeakKeyDictionary

from limits import RateLimitItem, parse, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.storage import storage_from_string

from postroom.errors import ConfigurationError
from storage.queues.group_commit import GroupCommit

__all__ = ["memory_counters", "parse_rate", "parse_rates", "redis_counters", "spend_in_order"]


def parse_rate(text: str | None, setting: str) -> RateLimitItem | None:
    """One rate from a setting, or ``None`` when unset; ``setting`` names it in the error."""
    if not text:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"{setting}={text!r} is not a rate; write it like '100/minute' or '500/day'"
        ) from exc


def parse_rates(text: str | None, setting: str) -> list[RateLimitItem]:
    """Several rates separated by ``;`` (``10/minute;200/day``); empty when unset."""
    if not text:
        return []
    try:
        return list(parse_many(text))
    except ValueError as exc:
        raise ConfigurationError(
            f"{setting}={text!r} is not a list of rates; write it like '10/minute;200/day'"
        ) from exc


def memory_counters(_url: str, _prefix: str) -> Storage:
    return MemoryStorage()


def redis_counters(url: str, prefix: str) -> Storage:
    storage = storage_from_string(
        f"async+{url}", implementation="redispy", key_prefix=f"{prefix}limits"
    )
    assert isinstance(storage, Storage), "an async+ URL gives an async storage"
    return storage


# KEYS[i] is a counter; ARGV[3i-2], ARGV[3i-1], ARGV[3i] its expiry, cost and limit. Each is
# incremented as limits' incr_expire.lua does (expiry set by the first hit of a window) until
# one goes over its limit: its 1-based index is returned (0: none), later ones stay untouched.
_SPEND_IN_ORDER = """
for i, key in ipairs(KEYS) do
    local cost = tonumber(ARGV[3 * i - 1])
    local current = redis.call("incrby", key, cost)
    if current == cost then
        redis.call("expire", key, ARGV[3 * i - 2])
    end
    if current > tonumber(ARGV[3 * i]) then
        return i
    end
end
return 0
"""
Spend = tuple[list[str], list[int]]
"""One request's counters (prefixed keys) and the script's arguments for them."""
_SPENDS: WeakKeyDictionary[Storage, GroupCommit[Spend, int]] = WeakKeyDictionary()


def _redis_spends(storage: RedisStorage) -> GroupCommit[Spend, int]:
    """The spends of the requests arriving together, sent as one pipeline.

    Each request is still its own script call, counted atomically on its own; the batch only
    shares the round trip and one connection checkout (under 50 concurrent API requests the
    script call each was the largest single cost of a read after the framework itself).
    """
    spends = _SPENDS.get(storage)
    if spends is None:
        client: Any = cast(Any, storage).bridge.get_connection()
        script = client.register_script(_SPEND_IN_ORDER)

        async def run(batch: Sequence[Spend]) -> list[int]:
            if len(batch) == 1:
                keys, args = batch[0]
                return [int(await script(keys=keys, args=args))]
            pipeline = client.pipeline(transaction=False)
            for keys, args in batch:
                await script(keys=keys, args=args, client=pipeline)
            return [int(over) for over in await pipeline.execute()]

        spends = _SPENDS[storage] = GroupCommit(run)
    return spends


async def spend_in_order(
    storage: Storage, hits: Sequence[tuple[RateLimitItem, Sequence[str]]]
) -> int | None:
    """Count one hit on each fixed window in turn (``limits``' ``FixedWindowRateLimiter.hit``
    with these identifiers) until one is over its limit; the index of that one, else None.

    As hitting them one by one would, the window that is over has counted this hit and the
    ones after it have not. On Redis, one round trip for all of them.
    """
    keys = [item.key_for(*identifiers) for item, identifiers in hits]
    if isinstance(storage, RedisStorage):
        bridge: Any = storage.bridge
        args: list[int] = []
        for item, _identifiers in hits:
            args += [item.get_expiry(), 1, item.amount]
        prefixed = [bridge.prefixed_key(key) for key in keys]
        over = await _redis_spends(storage).submit((prefixed, args))
        return over - 1 if over else None
    for index, ((item, _identifiers), key) in enumerate(zip(hits, keys, strict=True)):
        if await storage.incr(key, item.get_expiry(), amount=1) > item.amount:
            return index
    return None
