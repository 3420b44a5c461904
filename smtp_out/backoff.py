"""When to try a deferred delivery again, and when to stop trying.

Retries start soon, because most temporary failures (greylisting, a busy server) clear within
minutes, then slow down exponentially so a host that is down for a day is not hammered. Jitter
spreads the retries of many messages deferred at the same moment (one outage) over time
instead of letting them all return at once. A message that could not be delivered for days is
bounced, so the sender learns about it while it still matters (RFC 5321 4.5.4.1 suggests
giving up after 4 to 5 days).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["RetrySchedule"]


@dataclass(frozen=True)
class RetrySchedule:
    first: float = 60.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.2
    give_up_after: timedelta = timedelta(days=5)

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (counting from 1).

        Jitter only shortens the delay, so the cap stays a true upper bound while retries of
        messages already at the cap still spread out.
        """
        exponent = min(max(attempts, 1) - 1, 64)
        base = min(self.cap, self.first * self.factor**exponent)
        return base * (1.0 - self.jitter * rand())

    def expired(self, first_queued: datetime, now: datetime) -> bool:
        """True once a delivery has been trying for longer than we keep mail."""
        return now - first_queued >= self.give_up_after

    def describe_limit(self) -> str:
        days, seconds = self.give_up_after.days, self.give_up_after.seconds
        if days and not seconds:
            return f"{days} day{'s' if days != 1 else ''}"
        return str(self.give_up_after)
