"""API rate limits: separate budgets for sends and reads, per user and per client IP.

Counters live where :func:`storage.registry.open_limit_storage` puts them: in this process by
default, in Redis when ``POSTROOM_REDIS_URL`` is set, so every gateway process spends from the
same budget. Fixed windows (one counter increment per rate and request) keep the cost of a
check to a round trip or two. Over a budget, the request is refused with 429, ``Retry-After``
and the ``RateLimit-*`` fields (``RateLimit-Reset`` in seconds from now).

Reads are every ``GET``/``HEAD`` of a signed-in route (a router-level dependency, see
:func:`gateway.app.create_app`); sends are ``POST /send`` and sending a draft. Other writes
(flags, moves, drafts, templates) are not limited here.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem
from limits.aio.strategies import FixedWindowRateLimiter

from gateway.deps import CurrentUser
from postroom.errors import RateLimited
from postroom.settings import Settings
from storage.rate_limits import parse_rates
from storage.registry import open_limit_storage

__all__ = ["RateLimits", "ReadLimit", "SendLimit", "read_limit", "send_limit"]


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self.limiter = FixedWindowRateLimiter(open_limit_storage(settings))
        self.budgets: dict[str, list[tuple[str, list[RateLimitItem]]]] = {
            "send": [
                ("user", parse_rates(settings.rate_send_user, "rate_send_user")),
                ("IP address", parse_rates(settings.rate_send_ip, "rate_send_ip")),
            ],
            "read": [
                ("user", parse_rates(settings.rate_read_user, "rate_read_user")),
                ("IP address", parse_rates(settings.rate_read_ip, "rate_read_ip")),
            ],
        }

    async def spend(self, kind: str, user_id: str, ip: str) -> None:
        """Count one ``kind`` request; RateLimited if any of its budgets is used up."""
        for scope, rates in self.budgets[kind]:
            who = user_id if scope == "user" else ip
            for item in rates:
                if await self.limiter.hit(item, kind, scope, who):
                    continue
                stats = await self.limiter.get_window_stats(item, kind, scope, who)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise RateLimited(
                    f"too many {kind}s from this {scope}: the limit is {item.amount} per "
                    f"{_window(item)}; try again in {wait} s",
                    retry_after=wait,
                    limit=item.amount,
                    reset=wait,
                )


def _window(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"


def _limits(request: Request) -> RateLimits:
    limits: RateLimits = request.app.state.rate_limits
    return limits


def _ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def read_limit(request: Request, user: CurrentUser) -> None:
    if request.method in ("GET", "HEAD"):
        await _limits(request).spend("read", user.id, _ip(request))


async def send_limit(request: Request, user: CurrentUser) -> None:
    await _limits(request).spend("send", user.id, _ip(request))


ReadLimit = Annotated[None, Depends(read_limit)]
SendLimit = Annotated[None, Depends(send_limit)]
