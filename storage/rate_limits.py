"""Rate-limit counters shared by every role: delivery rates, AUTH failures, API budgets.

Counters live in the ``limits`` package's storage, opened by :func:`storage.registry.
open_limit_storage`: in process by default, in Redis when ``POSTROOM_REDIS_URL`` is set, so
several processes share one budget. Rates are written as the ``limits`` package parses them
(``100/minute``, ``500/day``, ``10/second;1000/hour`` for several at once).
"""

from __future__ import annotations

from limits import RateLimitItem, parse, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.storage import storage_from_string

from postroom.errors import ConfigurationError

__all__ = ["memory_counters", "parse_rate", "parse_rates", "redis_counters"]


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
