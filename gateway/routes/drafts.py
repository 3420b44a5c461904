"""Drafts: messages being written, kept in the Drafts mailbox until sent or deleted."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from sqlalchemy import CursorResult, delete
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import CurrentUser, Store
from gateway.rate_limits import SendingUser
from gateway.schemas import SendAccepted
from gateway.send_schemas import DraftList, DraftOut, SendRequest
from gateway.sending import accepted, prepare, send
from postroom.errors import Conflict
from postroom.message import parse_message
from storage.db.models import Draft, User
from storage.registry import Storage
from storage.repositories import drafts
from storage.repositories.mail import save_attachments
from storage.repositories.outbound import RecordedSend
from storage.transaction import transaction

router = APIRouter(tags=["drafts"])


def _out(draft: Draft) -> DraftOut:
    return DraftOut(
        id=draft.id,
        message_id=draft.message_id,
        draft=SendRequest.model_validate(draft.payload),
        created_at=draft.created_at,
        updated_at=draft.updated_at,
    )


async def _save(
    store: Storage, user: User, request: SendRequest, draft_id: str | None = None
) -> DraftOut:
    """Check and compose like a send (recipients and body may be missing), then file it."""
    composed = (await prepare(store, user, request, draft=True)).composed
    parsed = await asyncio.to_thread(parse_message, composed.raw)
    attachment_keys = await save_attachments(store.blobs, parsed)
    raw_key = await store.blobs.put(composed.raw)
    copy = drafts.DraftCopy(raw_key, len(composed.raw), parsed, attachment_keys, composed.bcc)
    async with transaction(store) as session:
        existing = None if draft_id is None else await drafts.get_draft(session, user.id, draft_id)
        draft = await drafts.save(session, user.id, copy, request.model_dump(mode="json"), existing)
        out = _out(draft)
    return out


@router.post("/drafts", status_code=201, response_model=DraftOut)
async def create_draft(store: Store, user: CurrentUser, request: SendRequest) -> DraftOut:
    """Save a draft; it appears in your Drafts mailbox."""
    return await _save(store, user, request)


@router.get("/drafts", response_model=DraftList)
async def list_drafts(store: Store, user: CurrentUser) -> DraftList:
    async with store.db.session() as session:
        rows = await drafts.list_drafts(session, user.id)
        return DraftList(items=[_out(d) for d in rows])


@router.get("/drafts/{draft_id}", response_model=DraftOut)
async def get_draft(store: Store, user: CurrentUser, draft_id: str) -> DraftOut:
    async with store.db.session() as session:
        return _out(await drafts.get_draft(session, user.id, draft_id))


@router.put("/drafts/{draft_id}", response_model=DraftOut)
async def update_draft(
    store: Store, user: CurrentUser, draft_id: str, request: SendRequest
) -> DraftOut:
    """Replace the draft with this version (its copy in Drafts is replaced too)."""
    return await _save(store, user, request, draft_id)


@router.delete("/drafts/{draft_id}", status_code=204)
async def delete_draft(store: Store, user: CurrentUser, draft_id: str) -> Response:
    async with transaction(store) as session:
        await drafts.remove(session, await drafts.get_draft(session, user.id, draft_id))
    return Response(status_code=204)


@router.post(
    "/drafts/{draft_id}/send",
    status_code=202,
    response_model=SendAccepted,
    responses={409: {"description": "The draft was sent (or deleted) meanwhile."}},
)
async def send_draft(store: Store, user: SendingUser, draft_id: str) -> SendAccepted:
    """Send the draft as saved; it leaves Drafts in the same transaction that queues it."""
    async with store.db.session() as session:
        draft = await drafts.get_draft(session, user.id, draft_id)
    request = SendRequest.model_validate(draft.payload)

    async def take_draft(session: AsyncSession, recorded: RecordedSend) -> None:
        result = await session.execute(delete(Draft).where(Draft.id == draft.id))
        assert isinstance(result, CursorResult)
        if result.rowcount != 1:
            raise Conflict(f"draft {draft_id} was sent or deleted meanwhile")
        await drafts.discard_copy(session, user.id, draft.message_id)

    return SendAccepted.model_validate(
        accepted(await send(store, user, request, on_record=take_draft))
    )
