"""Per-destination rates: how many messages a domain, or the smarthost, gets per window.

Counters live in the ``limits`` package's storage: in process by default, in Redis when
``POSTROOM_REDIS_URL`` is set, so several workers share one budget (a Gmail relay allowing 500
messages a day allows 500, not 500 per worker). Over a limit a delivery is postponed until the
window frees up; it stays queued and is never dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from postroom.settings import Settings
from storage.rate_limits import parse_rate
from storage.registry import open_limit_storage

__all__ = ["DeliveryLimits"]


@dataclass
class DeliveryLimits:
    per_domain: RateLimitItem | None = None
    relay: RateLimitItem | None = None
    storage: Storage = field(default_factory=MemoryStorage)

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryLimits:
        return cls(
            per_domain=parse_rate(settings.delivery_domain_rate, "POSTROOM_DELIVERY_DOMAIN_RATE"),
            relay=parse_rate(settings.smarthost_rate, "POSTROOM_SMARTHOST_RATE")
            if settings.smarthost_url
            else None,
            storage=open_limit_storage(settings),
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
