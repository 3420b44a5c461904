"""Domains and users: normalised names, argon2 passwords, the mailboxes every user starts with."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from postroom.errors import AlreadyExists, InvalidInput, NotFound
from storage.db.models import Domain, Mailbox, User
from storage.registry import Storage
from storage.repositories.accounts import add_domain, add_user, find_user, verify_password

PASSWORD = "correct horse battery"


@pytest.fixture
async def hosted(store: Storage) -> Storage:
    """A storage hosting example.test."""
    async with store.db.session() as s, s.begin():
        await add_domain(s, "example.test")
    return store


async def _user(store: Storage, address: str) -> User | None:
    async with store.db.session() as s:
        return await find_user(s, address)


async def test_a_new_user_gets_the_six_special_mailboxes(hosted: Storage) -> None:
    async with hosted.db.session() as s, s.begin():
        user = await add_user(s, "ann@example.test", PASSWORD)

    async with hosted.db.session() as s:
        roles = await s.scalars(select(Mailbox.role).where(Mailbox.user_id == user.id))
        assert sorted(r for r in roles if r is not None) == sorted(
            ["inbox", "sent", "drafts", "trash", "junk", "archive"]
        )


async def test_passwords_are_argon2_and_verified(hosted: Storage) -> None:
    async with hosted.db.session() as s, s.begin():
        await add_user(s, "ann@example.test", PASSWORD)

    user = await _user(hosted, "ann@example.test")
    assert user is not None
    assert user.password_hash.startswith("$argon2")
    assert PASSWORD not in user.password_hash
    assert await verify_password(user, PASSWORD)
    assert not await verify_password(user, PASSWORD + "!")
    assert not await verify_password(user, "")


async def test_add_user_refuses_a_domain_not_hosted_here(hosted: Storage) -> None:
    with pytest.raises(NotFound, match=re.escape("postroom domain add elsewhere.test")):
        async with hosted.db.session() as s, s.begin():
            await add_user(s, "ann@elsewhere.test", PASSWORD)

    assert await _user(hosted, "ann@elsewhere.test") is None


async def test_add_user_refuses_a_duplicate_in_another_case(hosted: Storage) -> None:
    async with hosted.db.session() as s, s.begin():
        await add_user(s, "ann@example.test", PASSWORD)

    with pytest.raises(AlreadyExists):
        async with hosted.db.session() as s, s.begin():
            await add_user(s, "ANN@Example.TEST", PASSWORD)

    async with hosted.db.session() as s:
        assert len((await s.scalars(select(User))).all()) == 1


async def test_add_user_refuses_a_short_password(hosted: Storage) -> None:
    with pytest.raises(InvalidInput) as raised:
        async with hosted.db.session() as s, s.begin():
            await add_user(s, "ann@example.test", "short")

    assert raised.value.field == "password"
    assert await _user(hosted, "ann@example.test") is None


async def test_add_domain_normalises_case_and_idna(store: Storage) -> None:
    async with store.db.session() as s, s.begin():
        domain = await add_domain(s, "Exämple.TEST")

    assert domain.name == "xn--exmple-cua.test"
    async with store.db.session() as s:
        assert list(await s.scalars(select(Domain.name))) == ["xn--exmple-cua.test"]


async def test_add_domain_refuses_a_duplicate(store: Storage) -> None:
    async with store.db.session() as s, s.begin():
        await add_domain(s, "example.test")

    for spelling in ("example.test", "EXAMPLE.Test", "example.test."):
        with pytest.raises(AlreadyExists):
            async with store.db.session() as s, s.begin():
                await add_domain(s, spelling)

    async with store.db.session() as s:
        assert list(await s.scalars(select(Domain.name))) == ["example.test"]
