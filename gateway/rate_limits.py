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
from storage.db.models import User
from storage.rate_limits import parse_rates, spend_in_order
from storage.registry import open_limit_storage

__all__ = [
    "RateLimits",
    "ReadLimit",
    "SendingUser",
    "read_limit",
    "sending_user",
]


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
        """Count one ``kind`` request; RateLimited if any of its budgets is used up.

        Every window of the kind in one go (:func:`storage.rate_limits.spend_in_order`: one
        Redis round trip, not one per window), in the order a refusal is decided: the user's
        windows, then the IP address's; the first one over refuses and the later ones are not
        counted.
        """
        hits = self._hits(kind, user_id, ip)
        if not hits:
            return
        over = await spend_in_order(self.limiter.storage, hits)
        if over is None:
            return
        item, identifiers = hits[over]
        scope = identifiers[1]
        stats = await self.limiter.get_window_stats(item, *identifiers)
        wait = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"too many {kind}s from this {scope}: the limit is {item.amount} per "
            f"{_window(item)}; try again in {wait} s",
            retry_after=wait,
            limit=item.amount,
            reset=wait,
        )

    def _hits(
        self, kind: str, user_id: str, ip: str
    ) -> list[tuple[RateLimitItem, tuple[str, str, str]]]:
        """Each window of ``kind`` with its counter's identifiers: (kind, scope, who)."""
        return [
            (item, (kind, scope, user_id if scope == "user" else ip))
            for scope, rates in self.budgets[kind]
            for item in rates
        ]


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


async def sending_user(request: Request, user: CurrentUser) -> User:
    """The signed-in user, once a send has been counted against their budget: one dependency
    for the sending routes instead of two (FastAPI's per-request cost grows with each)."""
    await _limits(request).spend("send", user.id, _ip(request))
    return user


ReadLimit = Annotated[None, Depends(read_limit)]
SendingUser = Annotated[User, Depends(sending_user)]
