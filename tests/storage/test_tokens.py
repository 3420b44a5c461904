"""The per-request token check: one read each time, revocation seen at once, users reused."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from postroom.errors import AuthenticationFailed
from storage.db.models import User
from storage.registry import Storage
from storage.repositories.accounts import add_domain, add_user
from storage.repositories.tokens import authenticate_recent, issue_token, revoke_token


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
        await session.execute(update(User).where(User.id == ann.id).values(change_seq=3))
    changed = await authenticate_recent(store.db.lone, secret)
    assert changed.change_seq == 3
    assert changed.user is not first.user
    assert (changed.user.change_seq, first.user.change_seq) == (3, 0)  # the old one untouched


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
