"""Mailboxes with their message counts; user folders can be created, renamed and deleted.

The special-use mailboxes every user starts with (inbox, sent, drafts, trash, junk, archive)
are what mail clients and the rest of postroom rely on, so they cannot be renamed or deleted.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from gateway.deps import CurrentUser, Store
from gateway.schemas import MailboxCreate, MailboxList, MailboxOut, MailboxRename
from storage.db.models import Mailbox
from storage.repositories.mail import (
    create_mailbox,
    delete_mailbox,
    get_mailbox,
    mailbox_counts,
    rename_mailbox,
)
from storage.transaction import transaction

router = APIRouter(prefix="/mailboxes", tags=["mailboxes"])

_NOT_YOURS: dict[int | str, dict[str, Any]] = {404: {"description": "No such mailbox of yours."}}


def _out(mailbox: Mailbox, total: int, unread: int) -> MailboxOut:
    return MailboxOut(
        id=mailbox.id, name=mailbox.name, role=mailbox.role, total=total, unread=unread
    )


async def _one(store: Store, user_id: str, mailbox_id: str) -> MailboxOut:
    async with store.db.session() as session:
        mailbox = await get_mailbox(session, user_id, mailbox_id)
        for row, total, unread in await mailbox_counts(session, user_id):
            if row.id == mailbox.id:
                return _out(row, total, unread)
    return _out(mailbox, 0, 0)


@router.get("", response_model=MailboxList)
async def list_mailboxes(store: Store, user: CurrentUser) -> MailboxList:
    """Your mailboxes, special ones first, each with its total and unread counts."""
    async with store.db.session() as session:
        rows = await mailbox_counts(session, user.id)
    return MailboxList(items=[_out(m, total, unread) for m, total, unread in rows])


@router.post(
    "",
    status_code=201,
    response_model=MailboxOut,
    responses={409: {"description": "You already have a mailbox of that name."}},
)
async def create_folder(store: Store, user: CurrentUser, body: MailboxCreate) -> MailboxOut:
    """Create a user folder (no role)."""
    async with transaction(store) as session:
        mailbox = await create_mailbox(session, user.id, body.name)
    return _out(mailbox, 0, 0)


@router.get("/{mailbox_id}", response_model=MailboxOut, responses=_NOT_YOURS)
async def read_mailbox(store: Store, user: CurrentUser, mailbox_id: str) -> MailboxOut:
    return await _one(store, user.id, mailbox_id)


@router.patch(
    "/{mailbox_id}",
    response_model=MailboxOut,
    responses={**_NOT_YOURS, 409: {"description": "The new name is taken."}},
)
async def rename_folder(
    store: Store, user: CurrentUser, mailbox_id: str, body: MailboxRename
) -> MailboxOut:
    """Rename a user folder; a special-use mailbox answers 422."""
    async with transaction(store) as session:
        await rename_mailbox(session, user.id, mailbox_id, body.name)
    return await _one(store, user.id, mailbox_id)


@router.delete("/{mailbox_id}", status_code=204, response_class=Response, responses=_NOT_YOURS)
async def delete_folder(store: Store, user: CurrentUser, mailbox_id: str) -> Response:
    """Delete a user folder; its messages move to Trash. A special-use mailbox answers 422."""
    async with transaction(store) as session:
        await delete_mailbox(session, user.id, mailbox_id)
    return Response(status_code=204)
