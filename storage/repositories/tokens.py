"""Bearer tokens: opaque secrets handed to clients, kept only as SHA-256 hashes.

A token is 256 random bits, so a fast hash is enough to make a leaked table useless; a slow
password hash would only slow down every request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import AuthenticationFailed
from storage.db.models import AuthToken, User
from storage.db.types import utcnow

__all__ = ["authenticate", "issue_token", "revoke_token"]

PREFIX = "prt_"


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
    secret = PREFIX + secrets.token_urlsafe(32)
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
