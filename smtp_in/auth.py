"""Checking AUTH credentials on the submission port, with failed attempts rate limited.

Failures are counted per client address (one host guessing many accounts) and per user name
(many hosts guessing one account), in the shared ``limits`` counters so every process sees the
same budget. Once a budget is spent the password is not even checked: a guesser learns nothing,
and argon2 is not made to burn CPU for it. Only failures count, so a user who types the
password right is never slowed down by their own successful logins.
"""

from __future__ import annotations

from dataclasses import dataclass

from limits import RateLimitItem
from limits.aio.strategies import MovingWindowRateLimiter

from storage.rate_limits import parse_rates
from storage.registry import Storage, open_limit_storage
from storage.repositories.accounts import find_user, verify_password

__all__ = ["Authenticator", "Submitter"]

INVALID = "535 5.7.8 Authentication credentials invalid"
THROTTLED = "454 4.7.0 Too many failed authentication attempts; try again later"


@dataclass(frozen=True)
class Submitter:
    """Who an authenticated session belongs to."""

    user_id: str
    address: str


class Authenticator:
    def __init__(self, store: Storage) -> None:
        settings = store.settings
        self.store = store
        self.per_ip: list[RateLimitItem] = parse_rates(
            settings.submission_auth_ip_rates, "POSTROOM_SUBMISSION_AUTH_IP_RATES"
        )
        self.per_user: list[RateLimitItem] = parse_rates(
            settings.submission_auth_user_rates, "POSTROOM_SUBMISSION_AUTH_USER_RATES"
        )
        self.limiter = MovingWindowRateLimiter(open_limit_storage(settings))

    async def check(self, peer: str, login: str, password: str) -> Submitter | str:
        """The submitter, or the reply refusing them."""
        login = login.strip().lower()
        budgets = [(rate, "smtp-auth-ip", peer) for rate in self.per_ip]
        budgets += [(rate, "smtp-auth-user", login) for rate in self.per_user]
        for rate, scope, key in budgets:
            if not await self.limiter.test(rate, scope, key):
                return THROTTLED
        async with self.store.db.session() as session:
            user = await find_user(session, login) if login else None
        if user is not None and await verify_password(user, password):
            return Submitter(user_id=user.id, address=user.address)
        for rate, scope, key in budgets:
            await self.limiter.hit(rate, scope, key)
        return INVALID
