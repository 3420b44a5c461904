"""Per-destination rates: how many messages a domain, or the smarthost, gets per window.

Counters live in the ``limits`` package's storage: in process by default, in Redis when
``POSTROOM_REDIS_URL`` is set, so several workers share one budget (a Gmail relay allowing 500
messages a day allows 500, not 500 per worker). Over a limit a delivery is postponed until the
window frees up; it stays queued and is never dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from postroom.errors import ConfigurationError
from postroom.settings import Settings

__all__ = ["DeliveryLimits"]


def _rate(text: str | None, setting: str) -> RateLimitItem | None:
    if not text:
        return None
    try:
        return parse(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"{setting}={text!r} is not a rate; write it like '100/minute' or '500/day'"
        ) from exc


def _counter_storage(settings: Settings) -> Storage:
    if not settings.redis_url:
        return MemoryStorage()
    storage = storage_from_string(
        f"async+{settings.redis_url}",
        implementation="redispy",
        key_prefix=f"{settings.redis_prefix}limits",
    )
    assert isinstance(storage, Storage), "an async+ URL gives an async storage"
    return storage


@dataclass
class DeliveryLimits:
    per_domain: RateLimitItem | None = None
    relay: RateLimitItem | None = None
    storage: Storage = field(default_factory=MemoryStorage)

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryLimits:
        return cls(
            per_domain=_rate(settings.delivery_domain_rate, "POSTROOM_DELIVERY_DOMAIN_RATE"),
            relay=_rate(settings.smarthost_rate, "POSTROOM_SMARTHOST_RATE")
            if settings.smarthost_url
            else None,
            storage=_counter_storage(settings),
        )

    async def wait(self, domain: str) -> float | None:
        """Take one message from every budget that applies, or say how long until one frees.

        Each ``hit`` is atomic in the counter storage, so concurrent workers never exceed a
        budget; when a later budget refuses, an earlier one stays spent, erring on the slow side.
        """
        limiter = MovingWindowRateLimiter(self.storage)
        for rate, key in ((self.per_domain, domain), (self.relay, "relay")):
            if rate is not None and not await limiter.hit(rate, "delivery", key):
                stats = await limiter.get_window_stats(rate, "delivery", key)
                return max(1.0, stats.reset_time - time.time())
        return None
