"""Bearer tokens and API keys: opaque secrets handed to clients, kept only as SHA-256 hashes.

A token is 256 random bits, so a fast hash is enough to make a leaked table useless; a slow
password hash would only slow down every request. Both kinds live in one table and
authenticate the same way: a session token (``prt_``) comes from signing in and expires; an API
key (``prk_``) is created for a REST client, never expires, and is shown once, at creation,
because only its hash is kept.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import AuthenticationFailed, InvalidInput, NotFound
from storage.db.models import AuthToken, User
from storage.db.types import utcnow

__all__ = [
    "API_KEY",
    "authenticate",
    "create_api_key",
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


async def authenticate(session: AsyncSession, secret: str) -> User:
    row = (
        await session.execute(
            select(AuthToken, User)
            .join(User, User.id == AuthToken.user_id)
            .where(AuthToken.token_hash == _hash(secret))
        )
    ).first()
    if row is None:
        raise AuthenticationFailed("unknown token: sign in again")
    token, user = row
    now = utcnow()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        raise AuthenticationFailed("this token has expired or was revoked: sign in again")
    return user


async def revoke_token(session: AsyncSession, secret: str) -> None:
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
        key.revoked_at = utcnow()
        await session.flush()
    return key
