"""The per-request token check: one read each time, revocation seen at once, users reused."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import update

from postroom.errors import AuthenticationFailed
from storage.db.models import AuthToken, User
from storage.db.types import utcnow
from storage.registry import Storage
from storage.repositories.accounts import add_domain, add_user
from storage.repositories.tokens import (
    Authenticated,
    authenticate_recent,
    issue_token,
    revoke_token,
)


async def _signed_in(store: Storage) -> tuple[User, str]:
    async with store.db.session() as session, session.begin():
        await add_domain(session, "tokens.test")
        user = await add_user(session, "ann@tokens.test", "a long password")
        secret, _token = await issue_token(session, user.id, ttl_seconds=3600)
    return user, secret


async def test_the_user_is_built_again_only_when_its_row_changed(store: Storage) -> None:
    ann, secret = await _signed_in(store)
    first = await authenticate_recent(store.db.lone, secret)
    again = await authenticate_recent(store.db.lone, secret)
    assert (first.user.id, first.change_seq) == (ann.id, 0)
    assert again.user is first.user  # the same row: the same shared, read-only object

    async with store.db.session() as session, session.begin():
        await session.execute(update(User).where(User.id == ann.id).values(is_admin=True))
    changed = await authenticate_recent(store.db.lone, secret)
    assert changed.user is not first.user
    assert (changed.user.is_admin, first.user.is_admin) == (True, False)  # the old untouched


async def test_a_new_change_seq_is_answered_fresh_without_building_the_user_again(
    store: Storage,
) -> None:
    """Every change the user makes moves ``change_seq``: the check answers the new value
    beside the same object, whose own ``change_seq`` is the one it was built with."""
    ann, secret = await _signed_in(store)
    first = await authenticate_recent(store.db.lone, secret)

    async with store.db.session() as session, session.begin():
        await session.execute(update(User).where(User.id == ann.id).values(change_seq=3))
    moved = await authenticate_recent(store.db.lone, secret)

    assert (first.change_seq, moved.change_seq) == (0, 3)
    assert moved.user is first.user
    assert moved.user.change_seq == 0


async def test_a_revoked_token_fails_its_next_check(store: Storage) -> None:
    """Revoked in another session (as the CLI or another gateway would): no memory of the
    user built before lets it through."""
    _ann, secret = await _signed_in(store)
    await authenticate_recent(store.db.lone, secret)
    async with store.db.session() as session, session.begin():
        await revoke_token(session, secret)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await authenticate_recent(store.db.lone, secret)
    with pytest.raises(AuthenticationFailed, match="unknown"):
        await authenticate_recent(store.db.lone, "prt_" + "x" * 43)


async def test_checks_arriving_together_each_get_their_own_answer(store: Storage) -> None:
    """Concurrent checks share one read (``asyncio.gather`` starts them all before it runs):
    each still gets its own token's user, or its own refusal."""
    async with store.db.session() as session, session.begin():
        await add_domain(session, "many.test")
        users = [await add_user(session, f"u{n}@many.test", "a long password") for n in range(4)]
        good = [(await issue_token(session, u.id, ttl_seconds=3600))[0] for u in users]
        expired, _ = await issue_token(session, users[0].id, ttl_seconds=3600)
        revoked, _ = await issue_token(session, users[1].id, ttl_seconds=3600)
        await revoke_token(session, revoked)
    async with store.db.session() as session, session.begin():
        await session.execute(
            update(AuthToken)
            .where(AuthToken.token_hash == hashlib.sha256(expired.encode()).hexdigest())
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    unknown = "prt_" + "y" * 43
    asked = [good[0], revoked, good[1], unknown, good[2], good[0], expired, good[3]] * 3

    answers = await asyncio.gather(
        *(authenticate_recent(store.db.lone, secret) for secret in asked),
        return_exceptions=True,
    )

    owner = {secret: user.address for secret, user in zip(good, users, strict=True)}
    for secret, answer in zip(asked, answers, strict=True):
        if secret in owner:
            assert isinstance(answer, Authenticated) and answer.user.address == owner[secret]
        else:
            assert isinstance(answer, AuthenticationFailed)
            assert ("unknown" if secret == unknown else "expired or was revoked") in str(answer)
