"""Domains, users, passwords and the mailboxes every user starts with."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.addresses import normalize_address, normalize_domain
from postroom.dkim import check_selector, generate_private_key
from postroom.errors import AlreadyExists, InvalidInput, NotFound
from storage.db.models import Domain, Mailbox, User
from storage.repositories.tokens import forget_recent

__all__ = [
    "SPECIAL_MAILBOXES",
    "add_domain",
    "add_user",
    "delete_domain",
    "delete_user",
    "find_user",
    "hosted_domain",
    "list_domains",
    "list_users",
    "mailbox_by_role",
    "verify_password",
]

SPECIAL_MAILBOXES = (
    ("inbox", "Inbox"),
    ("sent", "Sent"),
    ("drafts", "Drafts"),
    ("trash", "Trash"),
    ("junk", "Junk"),
    ("archive", "Archive"),
)
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()


async def add_domain(
    session: AsyncSession, name: str, *, dkim_selector: str = "postroom"
) -> Domain:
    """Host a domain, with a new DKIM key so its outgoing mail is signed from the start."""
    domain_name = normalize_domain(name, field="name")
    selector = check_selector(dkim_selector)
    if await hosted_domain(session, domain_name) is not None:
        raise AlreadyExists(f"domain {domain_name} is already hosted here")
    private_key = await asyncio.to_thread(generate_private_key)  # RSA key generation is slow
    domain = Domain(name=domain_name, dkim_selector=selector, dkim_private_key=private_key)
    session.add(domain)
    await session.flush()
    return domain


async def hosted_domain(session: AsyncSession, name: str) -> Domain | None:
    domain: Domain | None = await session.scalar(select(Domain).where(Domain.name == name.lower()))
    return domain


async def add_user(
    session: AsyncSession, address: str, password: str, *, is_admin: bool = False
) -> User:
    normalized = normalize_address(address, field="address").lower()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"the password must be at least {MIN_PASSWORD_LENGTH} characters long",
            field="password",
        )
    domain_name = normalized.rsplit("@", 1)[1]
    domain = await hosted_domain(session, domain_name)
    if domain is None:
        raise NotFound(
            f"domain {domain_name} is not hosted here; add it first with "
            f"`postroom domain add {domain_name}`"
        )
    if await find_user(session, normalized) is not None:
        raise AlreadyExists(f"user {normalized} already exists")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    user = User(
        domain_id=domain.id, address=normalized, password_hash=password_hash, is_admin=is_admin
    )
    session.add(user)
    await session.flush()
    for role, name in SPECIAL_MAILBOXES:
        session.add(Mailbox(user_id=user.id, name=name, role=role))
    await session.flush()
    return user


async def find_user(session: AsyncSession, address: str) -> User | None:
    user: User | None = await session.scalar(
        select(User).where(func.lower(User.address) == address.lower())
    )
    return user


async def verify_password(user: User, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def mailbox_by_role(session: AsyncSession, user_id: str, role: str) -> Mailbox:
    mailbox = await session.scalar(
        select(Mailbox).where(Mailbox.user_id == user_id, Mailbox.role == role)
    )
    if mailbox is None:
        raise NotFound(f"user {user_id} has no {role} mailbox")
    return mailbox


async def list_domains(session: AsyncSession) -> list[tuple[Domain, int]]:
    """Every hosted domain with how many users it has, by name."""
    users = select(User.domain_id, func.count().label("users")).group_by(User.domain_id).subquery()
    rows = await session.execute(
        select(Domain, users.c.users)
        .outerjoin(users, users.c.domain_id == Domain.id)
        .order_by(Domain.name)
    )
    return [(domain, int(count or 0)) for domain, count in rows]


async def delete_domain(session: AsyncSession, ref: str) -> Domain:
    """Stop hosting a domain (by id or name); refused while it still has users."""
    domain = await session.scalar(
        select(Domain).where(or_(Domain.id == ref, Domain.name == ref.lower()))
    )
    if domain is None:
        raise NotFound(f"domain {ref} is not hosted here")
    users = await session.scalar(select(func.count()).where(User.domain_id == domain.id))
    if users:
        raise InvalidInput(
            f"domain {domain.name} still has {users} user(s); delete them first",
            field="domain_id",
        )
    await session.delete(domain)
    await session.flush()
    return domain


async def list_users(session: AsyncSession) -> Sequence[User]:
    return (await session.scalars(select(User).order_by(User.address))).all()


async def delete_user(session: AsyncSession, ref: str, *, acting_user_id: str) -> User:
    """Delete a user (by id or address) with all their mail, tokens and change log.

    An administrator cannot delete themselves, so a platform is never left without the one
    who could undo the mistake.
    """
    user = await session.scalar(
        select(User).where(or_(User.id == ref, func.lower(User.address) == ref.lower()))
    )
    if user is None:
        raise NotFound(f"no user {ref}")
    if user.id == acting_user_id:
        raise InvalidInput("you cannot delete your own account", field="user_id")
    forget_recent(session)  # their tokens stop working in this process at once
    await session.delete(user)
    await session.flush()
    return user
