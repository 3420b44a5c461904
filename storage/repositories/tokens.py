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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Select, bindparam, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from postroom.errors import AuthenticationFailed, InvalidInput, NotFound
from storage.db.lone_read import LoneRead, list_parameter, one_of
from storage.db.models import AuthToken, User
from storage.db.types import utcnow
from storage.queues.group_commit import GroupCommit

__all__ = [
    "API_KEY",
    "Authenticated",
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


_TOKEN_AND_USER = select(
    AuthToken.token_hash.label("token_hash"),
    AuthToken.revoked_at.label("token_revoked_at"),
    AuthToken.expires_at.label("token_expires_at"),
    *User.__table__.columns,
).join_from(AuthToken, User, User.id == AuthToken.user_id)
"""The token and its user in one Core statement: no ORM identity map or session to pay for on
every request, and the user's ``change_seq`` comes along for the page cache."""

_CHECK = _TOKEN_AND_USER.where(AuthToken.token_hash == bindparam("key"))

_USER_FIELDS = (
    *(column.key for column in User.__table__.columns if column.key != "change_seq"),
    "change_seq",
)
_STABLE = slice(0, len(_USER_FIELDS) - 1)
"""Every field of :data:`_USER_FIELDS` but the last, ``change_seq``."""

_CHECK_MANY: dict[str, Select[Any]] = {}


def _check_many(dialect: str) -> Select[Any]:
    """:data:`_CHECK` for a list of token hashes, each row saying whose it is."""
    statement = _CHECK_MANY.get(dialect)
    if statement is None:
        statement = _CHECK_MANY[dialect] = _TOKEN_AND_USER.where(
            one_of(AuthToken.__table__.c.token_hash, "keys", dialect)
        )
    return statement


Row = dict[str, Any] | None
_LOOKUPS: WeakKeyDictionary[LoneRead, GroupCommit[str, Row]] = WeakKeyDictionary()


def _lookups(reads: LoneRead) -> GroupCommit[str, Row]:
    """The token checks of the requests arriving together, read with one statement.

    Under 50 concurrent requests, one query (one pool checkout on PostgreSQL, one hand-off
    to the connection's thread on SQLite) answers every request waiting for one, instead of
    a query each; a lone request is read at once. Each read still starts after its request
    did, so a token revoked before then is refused.
    """
    lookups = _LOOKUPS.get(reads)
    if lookups is None:
        dialect = reads.dialect.name

        async def read(keys: Sequence[str]) -> list[Row]:
            distinct = sorted(set(keys))
            rows = await reads.all(
                _check_many(dialect), {"keys": list_parameter(dialect, distinct)}
            )
            found = {row["token_hash"]: row for row in rows}
            return [found.get(key) for key in keys]

        lookups = _LOOKUPS[reads] = GroupCommit(read)
    return lookups


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Who a token belongs to, and their ``change_seq`` as read with the token just now.

    ``change_seq`` is ``None`` when the token was trusted from memory: a remembered user's
    sequence number is stale, so nothing may be derived from it.
    """

    user: User
    change_seq: int | None


class _BuiltUsers:
    """The ``User`` last built for each token hash, with the column values it was built from.

    Building an ORM object costs more than the rest of the check; a token whose user row reads
    as last time gets that same object again (shared and read-only, like a remembered one).
    Any change of the row builds a new one, except of its ``change_seq``, which moves with
    every change the user makes (every send): the object keeps the one it was built with, and
    the check answers the fresh one beside it (:class:`Authenticated`). Rebuilding for it was
    a twentieth of a send's time on the event loop.
    """

    def __init__(self) -> None:
        self._users: dict[str, tuple[tuple[Any, ...], User]] = {}

    def get(self, key: str, row: Mapping[str, Any]) -> User:
        values = tuple(row[field] for field in _USER_FIELDS)
        built = self._users.get(key)
        if built is not None and built[0][_STABLE] == values[_STABLE]:
            return built[1]
        user = User(**dict(zip(_USER_FIELDS, values, strict=True)))
        make_transient_to_detached(user)  # as if loaded and its session closed: never inserted
        if built is None and len(self._users) >= _RECENT_MAX:
            self._users.pop(next(iter(self._users)))
        self._users[key] = (values, user)
        return user


_built = _BuiltUsers()


def _checked(row: Mapping[str, Any] | None, key: str) -> tuple[User, datetime | None]:
    """The token row's user, detached, if the token is still good; AuthenticationFailed if not."""
    if row is None:
        raise AuthenticationFailed("unknown token: sign in again")
    expires_at: datetime | None = row["token_expires_at"]
    if row["token_revoked_at"] is not None or (expires_at is not None and expires_at <= utcnow()):
        raise AuthenticationFailed("this token has expired or was revoked: sign in again")
    return _built.get(key, row), expires_at


async def authenticate(session: AsyncSession, secret: str) -> User:
    key = _hash(secret)
    row = (await session.execute(_CHECK, {"key": key})).first()
    user, _expires_at = _checked(None if row is None else dict(row._mapping), key)
    return user


async def authenticate_recent(reads: LoneRead, secret: str, remember: float = 0.0) -> Authenticated:
    """:func:`authenticate` through ``reads`` (``db.lone``: one statement, no session), trusting
    a token this process validated in the last ``remember`` seconds (0: always looked up).

    The check runs on every API request, so it is one statement on the cheapest read path the
    database has (:mod:`storage.db.lone_read`); unless ``remember`` says otherwise, a token
    revoked by any process fails its next request here. The ``User`` returned may be shared by
    concurrent requests: treat it as read-only.
    """
    key = _hash(secret)
    if remember > 0 and (user := _recent.get(key)) is not None:
        return Authenticated(user, None)
    generation = _recent.generation
    row = await _lookups(reads).submit(key)
    user, expires_at = _checked(row, key)
    if remember > 0:
        _recent.put(key, user, expires_at, generation, remember)
    assert row is not None  # else _checked raised
    return Authenticated(user, row["change_seq"])


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
