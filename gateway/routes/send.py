"""Sending mail through the API."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import CurrentUser, Store
from gateway.schemas import RecipientState, SendAccepted, SendRequest, SendStatus
from gateway.sending import send
from storage.db.models import Delivery, DeliveryRecipient
from storage.repositories.outbound import send_status

router = APIRouter(tags=["send"])


@router.post("/send", status_code=202, response_model=SendAccepted)
async def send_message(store: Store, user: CurrentUser, request: SendRequest) -> SendAccepted:
    """Queue a message; 202 means it is stored durably and every recipient has a delivery."""
    recorded = await send(store, user, request)
    sent_id = recorded.outbound.sent_message_id
    assert sent_id is not None
    return SendAccepted(id=recorded.outbound.id, message_id=sent_id)


@router.get("/send/{outbound_id}", response_model=SendStatus)
async def get_send(store: Store, user: CurrentUser, outbound_id: str) -> SendStatus:
    """What became of each recipient of one of your sends; another user's is a 404."""
    async with store.db.session() as session:
        outbound, rows = await send_status(session, user.id, outbound_id)
    return SendStatus(
        id=outbound.id,
        message_id=outbound.sent_message_id,
        created_at=outbound.created_at,
        recipients=[_state(delivery, recipient) for delivery, recipient in rows],
    )


def _state(delivery: Delivery, recipient: DeliveryRecipient) -> RecipientState:
    """A recipient still pending shows its delivery's stop (held, cancelled) if there is one."""
    state = recipient.status
    if state in ("queued", "deferred") and delivery.status in ("held", "cancelled"):
        state = delivery.status
    reason = {"bounced": recipient.remote_reply, "held": delivery.held_reason}.get(state)
    waiting = state in ("queued", "deferred") and not delivery.local
    return RecipientState.model_validate(
        {
            "address": recipient.address,
            "state": state,
            "local": delivery.local,
            "attempts": delivery.attempts,
            "updated_at": recipient.updated_at,
            "reply": recipient.remote_reply if state == "delivered" else None,
            "last_error": recipient.remote_reply if state == "deferred" else None,
            "next_attempt_at": delivery.next_attempt_at if waiting else None,
            "reason": reason,
        }
    )
