"""Platform administration over the API: hosted domains and users, for administrators only.

These are platform-wide, not one user's, so a signed-in non-administrator gets 403 (the routes
exist for everyone; a 404 would hide nothing). The same operations exist on the command line
(``postroom domain ...``, ``postroom user ...``) and share the repositories in
``storage/repositories/accounts.py``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway.deps import AdminUser, Store
from gateway.schemas import DomainCreate, DomainList, DomainOut, UserCreate, UserList, UserOut
from postroom.dkim import dns_record
from storage.db.models import Domain, User
from storage.repositories.accounts import (
    add_domain,
    add_user,
    delete_domain,
    delete_user,
    list_domains,
    list_users,
)

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    responses={403: {"description": "Only an administrator may do this."}},
)


def _domain(domain: Domain, users: int, *, with_record: bool = False) -> DomainOut:
    record = None
    if with_record and domain.dkim_selector and domain.dkim_private_key:
        record = dns_record(domain.name, domain.dkim_selector, domain.dkim_private_key).zone_line()
    return DomainOut(
        id=domain.id,
        name=domain.name,
        users=users,
        created_at=domain.created_at,
        dkim_record=record,
    )


def _user(user: User) -> UserOut:
    return UserOut(
        id=user.id, address=user.address, is_admin=user.is_admin, created_at=user.created_at
    )


@router.get("/domains", response_model=DomainList)
async def domains(store: Store, admin: AdminUser) -> DomainList:
    async with store.db.session() as session:
        rows = await list_domains(session)
    return DomainList(items=[_domain(d, n) for d, n in rows])


@router.post(
    "/domains",
    status_code=201,
    response_model=DomainOut,
    responses={409: {"description": "The domain is already hosted."}},
)
async def create_domain(store: Store, admin: AdminUser, body: DomainCreate) -> DomainOut:
    """Host a domain; the answer carries the DKIM record to publish."""
    async with store.db.session() as session, session.begin():
        domain = await add_domain(session, body.name, dkim_selector=store.settings.dkim_selector)
    return _domain(domain, 0, with_record=True)


@router.delete(
    "/domains/{domain_id}",
    status_code=204,
    response_class=Response,
    responses={404: {"description": "Not hosted here."}, 422: {"description": "It has users."}},
)
async def remove_domain(store: Store, admin: AdminUser, domain_id: str) -> Response:
    """Stop hosting a domain (by id or name); refused while it has users."""
    async with store.db.session() as session, session.begin():
        await delete_domain(session, domain_id)
    return Response(status_code=204)


@router.get("/users", response_model=UserList)
async def users(store: Store, admin: AdminUser) -> UserList:
    async with store.db.session() as session:
        rows = await list_users(session)
    return UserList(items=[_user(u) for u in rows])


@router.post(
    "/users",
    status_code=201,
    response_model=UserOut,
    responses={
        404: {"description": "The address's domain is not hosted here."},
        409: {"description": "The user exists."},
    },
)
async def create_user(store: Store, admin: AdminUser, body: UserCreate) -> UserOut:
    """Create a user with the special mailboxes (inbox, sent, drafts, trash, junk, archive)."""
    async with store.db.session() as session, session.begin():
        user = await add_user(session, body.address, body.password, is_admin=body.is_admin)
    return _user(user)


@router.delete(
    "/users/{user_id}",
    status_code=204,
    response_class=Response,
    responses={404: {"description": "No such user."}},
)
async def remove_user(store: Store, admin: AdminUser, user_id: str) -> Response:
    """Delete a user (by id or address) with all their mail; not yourself (422)."""
    async with store.db.session() as session, session.begin():
        await delete_user(session, user_id, acting_user_id=admin.id)
    return Response(status_code=204)
