"""Bearer tokens and API keys: opaque secrets handed to clients, kept only as SHA-256 hashes.

A token is 256 random bits, so a fast hash is enough to make a leaked table useless; a slow
password hash would only slow down every request. Both kinds live in one table and
authenticate the same way: a session token (``prt_``) comes from signing in and expires; an API
key (``prk_``) is created for a REST client, never expires, and is shown once, at creation,
because only its hash is kept.

The gateway checks a token on every request. An operator may let :func:`authenticate_recent`
remember a token it validated for a few seconds (``POSTROOM_TOKEN_CACHE_SECONDS``, default 0:
off), so a busy client costs one lookup per few seconds instead of one per request. Revoking a
token (logout, an API key revoked) or deleting a user empties that memory at once in the acting
process, and again when its transaction commits (:func:`forget_recent`); but another process
(another gateway, or the CLI revoking a key) cannot reach it, so there the revoked token is
accepted for up to that many seconds. That is why it is off unless chosen.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta

from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import AuthenticationFailed, InvalidInput, NotFound
from storage.db.models import AuthToken, User
from storage.db.types import utcnow

__all__ = [
    "API_KEY",
    "authenticate",
    "authenticate_recent",
    "create_api_key",
    "forget_recent",
    "issue_token",
    "list_api_keys",
    "revoke_api_key",
    "revoke_token",
]

PREFIX = "prt_"
API_KEY = "api_key"
_PREFIXES = {API_KEY: "prk_"}
KEY_NAME_MAX = 255


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def issue_token(
    session: AsyncSession,
    user_id: str,
    *,
    ttl_seconds: int | None,
    kind: str = "session",
    name: str = "",
) -> tuple[str, AuthToken]:
    secret = _PREFIXES.get(kind, PREFIX) + secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=ttl_seconds) if ttl_seconds else None
    token = AuthToken(
        user_id=user_id, token_hash=_hash(secret), kind=kind, name=name, expires_at=expires
    )
    session.add(token)
    await session.flush()
    return secret, token


_RECENT_MAX = 10_000


class _RecentTokens:
    """Tokens this process validated lately: hash -> (user, token expiry, trusted until)."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[User, datetime | None, float]] = {}
        self.generation = 0

    def get(self, key: str) -> User | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        user, expires_at, until = entry
        if time.monotonic() >= until or (expires_at is not None and expires_at <= utcnow()):
            self._entries.pop(key, None)
            return None
        return user

    def put(
        self, key: str, user: User, expires_at: datetime | None, generation: int, seconds: float
    ) -> None:
        """Remember ``key`` unless a revocation happened since its lookup began."""
        if generation != self.generation:
            return
        if len(self._entries) >= _RECENT_MAX:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (user, expires_at, time.monotonic() + seconds)

    def forget(self) -> None:
        self._entries.clear()
        self.generation += 1


_recent = _RecentTokens()


async def _lookup(session: AsyncSession, key: str) -> tuple[AuthToken, User]:
    row = (
        await session.execute(
            select(AuthToken, User)
            .join(User, User.id == AuthToken.user_id)
            .where(AuthToken.token_hash == key)
        )
    ).first()
    if row is None:
        raise AuthenticationFailed("unknown token: sign in again")
    token, user = row
    now = utcnow()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        raise AuthenticationFailed("this token has expired or was revoked: sign in again")
    return token, user


async def authenticate(session: AsyncSession, secret: str) -> User:
    _token, user = await _lookup(session, _hash(secret))
    return user


async def authenticate_recent(
    open_session: Callable[[], AbstractAsyncContextManager[AsyncSession]],
    secret: str,
    remember: float = 0.0,
) -> User:
    """:func:`authenticate`, trusting a token this process validated in the last ``remember``
    seconds (0: always looked up).

    The ``User`` returned may be shared by concurrent requests: treat it as read-only.
    """
    key = _hash(secret)
    if remember > 0 and (user := _recent.get(key)) is not None:
        return user
    generation = _recent.generation
    async with open_session() as session:
        token, user = await _lookup(session, key)
    if remember > 0:
        _recent.put(key, user, token.expires_at, generation, remember)
    return user


def forget_recent(session: AsyncSession) -> None:
    """Stop trusting remembered tokens now and once the revoking transaction has committed."""
    _recent.forget()
    event.listen(session.sync_session, "after_commit", lambda _s: _recent.forget(), once=True)


async def revoke_token(session: AsyncSession, secret: str) -> None:
    forget_recent(session)
    await session.execute(
        update(AuthToken)
        .where(AuthToken.token_hash == _hash(secret), AuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def create_api_key(session: AsyncSession, user_id: str, name: str) -> tuple[str, AuthToken]:
    """A key for a REST client; the secret is returned here and never again."""
    cleaned = name.strip()
    if not cleaned or len(cleaned) > KEY_NAME_MAX or any(ord(c) < 32 for c in cleaned):
        raise InvalidInput(
            f"name the key (1 to {KEY_NAME_MAX} printable characters) so you can tell it apart",
            field="name",
        )
    return await issue_token(session, user_id, ttl_seconds=None, kind=API_KEY, name=cleaned)


async def list_api_keys(session: AsyncSession, user_id: str) -> Sequence[AuthToken]:
    """This user's API keys, revoked ones included (they say when), oldest first."""
    return (
        await session.scalars(
            select(AuthToken)
            .where(AuthToken.user_id == user_id, AuthToken.kind == API_KEY)
            .order_by(AuthToken.created_at, AuthToken.id)
        )
    ).all()


async def revoke_api_key(session: AsyncSession, user_id: str, key_id: str) -> AuthToken:
    """Revoke one of this user's keys; revoking twice is harmless. Another's is NotFound."""
    key = await session.scalar(
        select(AuthToken).where(
            AuthToken.id == key_id, AuthToken.user_id == user_id, AuthToken.kind == API_KEY
        )
    )
    if key is None:
        raise NotFound(f"no API key {key_id}")
    if key.revoked_at is None:
        forget_recent(session)
        key.revoked_at = utcnow()
        await session.flush()
    return key
