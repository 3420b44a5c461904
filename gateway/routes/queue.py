"""The outbound queue over the API, for administrators: the same operations as ``postroom queue``.

Platform-wide like the rest of ``/admin``, so a signed-in non-administrator gets 403. The logic
lives once in ``storage/repositories/queue_admin.py``; this module only maps it to HTTP. Deleting
cancels the delivery and answers with it: the rows stay, so the sender's ``GET /send/{id}``
still shows the recipients as cancelled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from gateway.deps import AdminUser, Store
from storage.repositories import queue_admin
from storage.repositories.queue_admin import QueueEntry

__all__ = ["router"]

router = APIRouter(
    prefix="/admin/queue",
    tags=["admin"],
    responses={
        403: {"description": "Only an administrator may do this."},
        404: {"description": "No such remote delivery."},
    },
)

Status = Literal["queued", "deferred", "held", "delivered", "bounced", "partial", "cancelled"]


class QueueRecipientOut(BaseModel):
    address: str
    status: str
    reply: str | None = Field(description="The remote server's last answer, or why held.")


class QueueEntryOut(BaseModel):
    id: str
    outbound_id: str = Field(description="The send this delivery belongs to (GET /send/{id}).")
    sender: str
    domain: str
    status: Status
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None
    held_reason: str | None
    recipient_count: int
    recipients: list[QueueRecipientOut] | None = Field(
        default=None, description="Each recipient's state; in single-delivery answers only."
    )


class QueueList(BaseModel):
    items: list[QueueEntryOut]


class HoldRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "checking a complaint"}]})

    reason: str | None = Field(
        default=None,
        max_length=500,
        description="Shown to the sender in GET /send/{id}; 'held by an administrator' if unset.",
    )


_NO_REASON = HoldRequest()


def _out(entry: QueueEntry, *, detail: bool = True) -> QueueEntryOut:
    recipients = [
        QueueRecipientOut(address=r.address, status=r.status, reply=r.reply)
        for r in entry.recipients
    ]
    return QueueEntryOut(
        id=entry.id,
        outbound_id=entry.outbound_id,
        sender=entry.sender,
        domain=entry.domain,
        status=entry.status,  # one of queue_admin.STATUSES
        attempts=entry.attempts,
        next_attempt_at=entry.next_attempt_at,
        created_at=entry.created_at,
        last_error=entry.last_error,
        held_reason=entry.held_reason,
        recipient_count=entry.recipient_count,
        recipients=recipients if detail else None,
    )


@router.get("", response_model=QueueList)
async def list_queue(
    store: Store,
    admin: AdminUser,
    status: Annotated[Status | None, Query(description="Unset: queued, deferred and held.")] = None,
    domain: Annotated[str | None, Query(max_length=253)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> QueueList:
    """Deliveries by when they are due, oldest first."""
    async with store.db.session() as session:
        entries = await queue_admin.list_entries(session, status=status, domain=domain, limit=limit)
    return QueueList(items=[_out(e, detail=False) for e in entries])


@router.get("/{delivery_id}", response_model=QueueEntryOut)
async def show_delivery(store: Store, admin: AdminUser, delivery_id: str) -> QueueEntryOut:
    async with store.db.session() as session:
        return _out(await queue_admin.show(session, delivery_id))


@router.post(
    "/{delivery_id}/retry",
    response_model=QueueEntryOut,
    responses={409: {"description": "Not queued or deferred."}},
)
async def retry_delivery(store: Store, admin: AdminUser, delivery_id: str) -> QueueEntryOut:
    """Make a queued or deferred delivery due now."""
    return _out(await queue_admin.retry(store, delivery_id))


@router.post(
    "/{delivery_id}/hold",
    response_model=QueueEntryOut,
    responses={409: {"description": "Not queued or deferred."}},
)
async def hold_delivery(
    store: Store, admin: AdminUser, delivery_id: str, body: HoldRequest = _NO_REASON
) -> QueueEntryOut:
    """Keep a pending delivery back; no worker takes it until it is released (body optional)."""
    return _out(await queue_admin.hold(store, delivery_id, body.reason))


@router.post(
    "/{delivery_id}/release",
    response_model=QueueEntryOut,
    responses={409: {"description": "Not held."}},
)
async def release_delivery(store: Store, admin: AdminUser, delivery_id: str) -> QueueEntryOut:
    """Put a held delivery back in the queue, due now."""
    return _out(await queue_admin.release(store, delivery_id))


@router.delete(
    "/{delivery_id}",
    response_model=QueueEntryOut,
    responses={409: {"description": "Already finished (delivered, bounced, cancelled)."}},
)
async def delete_delivery(store: Store, admin: AdminUser, delivery_id: str) -> QueueEntryOut:
    """Cancel a delivery that has not finished; answers with it, now cancelled."""
    return _out(await queue_admin.delete(store, delivery_id))
