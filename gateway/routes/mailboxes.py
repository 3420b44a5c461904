"""Mailboxes with their message counts."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import CurrentUser, Store
from gateway.schemas import MailboxList, MailboxOut
from storage.repositories.mail import mailbox_counts

router = APIRouter(prefix="/mailboxes", tags=["mailboxes"])


@router.get("", response_model=MailboxList)
async def list_mailboxes(store: Store, user: CurrentUser) -> MailboxList:
    async with store.db.session() as session:
        rows = await mailbox_counts(session, user.id)
    return MailboxList(
        items=[
            MailboxOut(id=m.id, name=m.name, role=m.role, total=total, unread=unread)
            for m, total, unread in rows
        ]
    )
