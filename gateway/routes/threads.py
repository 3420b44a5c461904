"""A conversation: every message of one of your threads, across your mailboxes."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import CurrentUser, Store
from gateway.routes.messages import message_item
from gateway.schemas import ThreadOut
from storage.repositories.mail import thread_messages

router = APIRouter(prefix="/threads", tags=["messages"])


@router.get(
    "/{thread_id}",
    response_model=ThreadOut,
    response_model_by_alias=True,
    responses={404: {"description": "No such thread of yours."}},
)
async def read_thread(store: Store, user: CurrentUser, thread_id: str) -> ThreadOut:
    """The messages of a thread, oldest first; a message's ``thread`` field gives the id."""
    async with store.db.session() as session:
        messages = await thread_messages(session, user.id, thread_id)
    return ThreadOut(
        id=thread_id,
        subject=messages[0].subject,
        messages=[message_item(m) for m in messages],
    )
