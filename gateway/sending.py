"""Sending from the API: check and compose the whole request, then hand it to the outbox.

Everything that can be wrong with a request (a template value missing, a bad address, a header
with a newline, a parent message that is not there, the size) is found before anything is
written; :func:`storage.outbox.submit` then makes the message durable in one transaction. Every
API send is recorded with the time it is due (now, ``send_at``, or after the undo window), so
``DELETE /send/{id}`` can cancel it until it goes out.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.compose import Composed, Threading, compose
from gateway.send_schemas import SendRequest
from gateway.templating import render
from postroom.addresses import check_header_value
from postroom.errors import InvalidInput, NotFound
from search.documents import send_document
from storage.db.models import Message, MessageContent, User
from storage.db.types import utcnow
from storage.outbox import Origin, submit
from storage.registry import Storage
from storage.repositories import idempotency
from storage.repositories.outbound import RecordedSend
from storage.repositories.templates import get_template

__all__ = ["Prepared", "accepted", "prepare", "send", "send_once"]

_MSGID = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")
MAX_SCHEDULE = timedelta(days=366)
MAX_REFERENCES = 20
"""References kept from the parent (the oldest and the newest matter most to threading)."""

OnRecord = Callable[[AsyncSession, RecordedSend], Awaitable[None]]


@dataclass
class Prepared:
    composed: Composed
    send_at: datetime


def accepted(recorded: RecordedSend) -> dict[str, Any]:
    """The 202 body: what an idempotent repeat returns too."""
    return {
        "id": recorded.outbound.id,
        "message_id": recorded.outbound.sent_message_id,
        "status": "queued",
    }


async def prepare(
    store: Storage, user: User, request: SendRequest, *, draft: bool = False
) -> Prepared:
    """The composed message and when it is due; raises on anything wrong, writing nothing."""
    settings = store.settings
    now = utcnow()
    send_at = _due(request.send_at, now, settings.send_undo_seconds)
    threading: Threading | None = None
    if request.template_id is not None or request.in_reply_to is not None:
        async with store.db.reader() as session:
            if request.template_id is not None:
                request = await _fill_template(session, user, request)
            if request.in_reply_to is not None:
                threading = await _threading(session, user, request.in_reply_to)
    composed = compose(
        request,
        sender=user.address,
        hostname=settings.hostname,
        max_size=settings.max_message_size,
        threading=threading,
        date=send_at,
        draft=draft,
    )
    return Prepared(composed, send_at)


async def send(
    store: Storage, user: User, request: SendRequest, *, on_record: OnRecord | None = None
) -> RecordedSend:
    prepared = await prepare(store, user, request)
    composed = prepared.composed
    return await submit(
        store,
        user,
        composed.raw,
        recipients=composed.recipients,
        bcc=composed.bcc,
        origins=_origins(composed),
        send_at=prepared.send_at,
        on_record=on_record,
        parsed=composed.parsed,
        index=send_document,
    )


async def send_once(
    store: Storage, user: User, request: SendRequest, key: str
) -> tuple[dict[str, Any], bool]:
    """Send under an ``Idempotency-Key``: (the 202 body, whether it is a replay)."""
    digest = idempotency.fingerprint(request.model_dump(mode="json"))
    async with store.db.reader() as session:
        row = await idempotency.find(session, user.id, key)
    if row is not None:
        return idempotency.replay(row, digest), True
    response: dict[str, Any] = {}

    async def remember(session: AsyncSession, recorded: RecordedSend) -> None:
        response.update(accepted(recorded))
        await idempotency.remember(session, user.id, key, digest, response)

    try:
        await send(store, user, request, on_record=remember)
    except IntegrityError:
        # A twin request committed the same key first; its send stands, ours was rolled back.
        async with store.db.reader() as session:
            row = await idempotency.find(session, user.id, key)
        if row is None:
            raise
        return idempotency.replay(row, digest), True
    return response, False


def _due(send_at: datetime | None, now: datetime, undo_seconds: float) -> datetime:
    earliest = now + timedelta(seconds=undo_seconds)
    if send_at is None:
        return earliest
    if send_at.tzinfo is None:
        raise InvalidInput(
            "give send_at with a time zone, like 2030-01-31T09:00:00Z", field="send_at"
        )
    if send_at - now > MAX_SCHEDULE:
        raise InvalidInput("send_at may be at most a year ahead", field="send_at")
    return max(send_at, earliest)


async def _fill_template(session: AsyncSession, user: User, request: SendRequest) -> SendRequest:
    assert request.template_id is not None
    if request.subject or request.text is not None or request.html is not None:
        raise InvalidInput(
            "give either template_id or subject/text/html, not both", field="template_id"
        )
    try:
        template = await get_template(session, user.id, request.template_id)
    except NotFound as exc:
        raise InvalidInput(exc.message, field="template_id") from exc
    subject, text, html = render(template, request.variables)
    return request.model_copy(update={"subject": subject, "text": text, "html": html})


async def _threading(session: AsyncSession, user: User, ref: str) -> Threading:
    """The parent's Message-ID and References: from the user's own copy when there is one."""
    ref = ref.strip()
    by_header = ref.startswith("<") and ref.endswith(">")
    if by_header:
        condition = Message.message_id_header == ref
    else:
        condition = Message.id == ref
    parent = await session.scalar(
        select(Message).where(Message.user_id == user.id, condition).limit(1)
    )
    if parent is None:
        if not by_header:
            raise InvalidInput(f"you have no message {ref}", field="in_reply_to")
        if not _MSGID.match(ref):
            raise InvalidInput(f"{ref!r} is not a Message-ID", field="in_reply_to")
        return Threading(_header(ref))
    if parent.message_id_header is None:
        raise InvalidInput(
            f"message {parent.id} has no Message-ID to reply to", field="in_reply_to"
        )
    content = await session.get(MessageContent, parent.blob_key)
    references = list((content.headers if content else {}).get("references") or [])
    if len(references) > MAX_REFERENCES:
        references = references[:1] + references[-(MAX_REFERENCES - 1) :]
    return Threading(
        _header(parent.message_id_header), [_header(r) for r in references if isinstance(r, str)]
    )


def _header(value: str) -> str:
    return check_header_value(value, field="in_reply_to")


def _origins(composed: Composed) -> dict[str, Origin]:
    """Each recipient's first request field, so an error points at it."""
    origins: dict[str, Origin] = {}
    for name, values in (("to", composed.to), ("cc", composed.cc), ("bcc", composed.bcc)):
        for index, address in enumerate(values):
            origins.setdefault(address.lower(), Origin(f"{name}[{index}]", address))
    return origins
