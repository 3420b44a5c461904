"""Sending mail through the API."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import CurrentUser, Store
from gateway.schemas import SendAccepted, SendRequest
from gateway.sending import send

router = APIRouter(tags=["send"])


@router.post("/send", status_code=202, response_model=SendAccepted)
async def send_message(store: Store, user: CurrentUser, request: SendRequest) -> SendAccepted:
    """Queue a message; 202 means it is stored durably and every recipient has a delivery."""
    recorded = await send(store, user, request)
    sent_id = recorded.outbound.sent_message_id
    assert sent_id is not None
    return SendAccepted(id=recorded.outbound.id, message_id=sent_id)
