"""Idempotency keys: the first result of a send, returned again for a repeat of the request.

The key row is written in the send's own transaction, under a unique (user, key) constraint, so
of two identical requests racing only one can commit: the other's transaction fails as a whole
(nothing of its send is kept, no hint was given) and it answers with the winner's result. A key
is honoured for :data:`WINDOW`; after that the same key starts a new send.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import Conflict
from storage.db.models import IdempotencyKey
from storage.db.types import utcnow

__all__ = ["WINDOW", "find", "fingerprint", "remember", "replay"]

WINDOW = timedelta(hours=24)


def fingerprint(request: dict[str, Any]) -> str:
    """A hash of the request as parsed, so JSON key order or spacing does not matter."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def find(session: AsyncSession, user_id: str, key: str) -> IdempotencyKey | None:
    return await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at > utcnow() - WINDOW,
        )
    )


def replay(row: IdempotencyKey, request_hash: str) -> dict[str, Any]:
    """The stored response, if the repeat is the same request; Conflict otherwise."""
    if row.request_hash != request_hash:
        raise Conflict(
            f"Idempotency-Key {row.key!r} was used at {row.created_at:%Y-%m-%d %H:%M:%S} UTC "
            "for a different request; use a new key for a new message"
        )
    return dict(row.response)


async def remember(
    session: AsyncSession, user_id: str, key: str, request_hash: str, response: dict[str, Any]
) -> None:
    """Record the key in the caller's transaction; a racing twin fails at the flush."""
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at <= utcnow() - WINDOW,
        )
    )
    session.add(
        IdempotencyKey(user_id=user_id, key=key, request_hash=request_hash, response=response)
    )
    await session.flush()
