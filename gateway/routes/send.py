"""Sending mail through the API: JSON or multipart, idempotent on request, cancellable."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from gateway.deps import CurrentUser, Store, bearer, current_user
from gateway.errors import PayloadTooLarge
from gateway.rate_limits import ReadLimit, sending_user
from gateway.schemas import RecipientState, SendAccepted, SendStatus
from gateway.send_schemas import SendRequest
from gateway.sending import accepted, send, send_once
from postroom.errors import InvalidInput
from storage.db.models import Delivery, DeliveryRecipient
from storage.registry import Storage
from storage.repositories.outbound import send_status
from storage.repositories.schedules import cancel

__all__ = ["read_send_request", "router"]

router = APIRouter(tags=["send"])
"""Included without the read budget of the other routers: ``GET`` here asks for it itself."""

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_LISTS = ("to", "cc", "bcc", "reply_to")
_TEXTS = ("subject", "text", "html", "in_reply_to", "send_at", "template_id")
_OBJECTS = ("headers", "variables")

_MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{name: {"type": "array", "items": {"type": "string"}} for name in _LISTS},
        **{name: {"type": "string"} for name in _TEXTS},
        **{
            name: {"type": "string", "description": "A JSON object, as in the JSON body."}
            for name in _OBJECTS
        },
        "attachments": {"type": "array", "items": {"type": "string", "format": "binary"}},
    },
}
SEND_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SendRequest"}},
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
        },
    }
}
_IDEMPOTENCY = (
    "Repeat a request with the same key within 24 hours and get the first result again, "
    "without a second send."
)
_SEND_OPERATION: dict[str, Any] = {
    **SEND_BODY,
    "security": [{"HTTPBearer": []}],
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": _IDEMPOTENCY,
            "schema": {"type": "string", "pattern": _KEY.pattern, "maxLength": 255},
        }
    ],
}
"""What ``POST /send`` reads besides its body, which FastAPI would otherwise have written from
its dependencies (see :func:`send_message`)."""


def _body_limit(store_max: int) -> int:
    """Largest request body accepted: the message limit, plus base64 and JSON overhead."""
    return store_max * 4 // 3 + 1024 * 1024


async def read_send_request(request: Request, max_message_size: int) -> SendRequest:
    """The request as a SendRequest, from JSON or from multipart/form-data with files."""
    limit = _body_limit(max_message_size)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"the request is {declared} bytes; messages may be {max_message_size} bytes",
            field="body",
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=100, max_fields=1000, max_part_size=limit)
        data = await _from_form(form)
    elif content_type in ("application/json", ""):
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(
                    f"the request is over {limit} bytes; messages may be {max_message_size}",
                    field="body",
                )
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise InvalidInput(f"the body is not valid JSON: {exc}", field="body") from exc
    else:
        raise InvalidInput(
            f"send application/json or multipart/form-data, not {content_type}", field="body"
        )
    try:
        return SendRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


async def _from_form(form: FormData) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in _LISTS:
        if values := [v for v in form.getlist(name) if isinstance(v, str)]:
            data[name] = values
    for name in _TEXTS:
        value = form.get(name)
        if isinstance(value, str):
            data[name] = value
    for name in _OBJECTS:
        value = form.get(name)
        if isinstance(value, str) and value:
            try:
                data[name] = json.loads(value)
            except ValueError as exc:
                raise InvalidInput(f"{name} must be a JSON object: {exc}", field=name) from exc
    attachments = []
    for upload in form.getlist("attachments"):
        if isinstance(upload, UploadFile):
            attachments.append(
                {
                    "filename": upload.filename or "attachment",
                    "content_type": upload.content_type or "application/octet-stream",
                    "content": base64.b64encode(await upload.read()).decode("ascii"),
                }
            )
    if attachments:
        data["attachments"] = attachments
    unknown = set(form.keys()) - {*_LISTS, *_TEXTS, *_OBJECTS, "attachments"}
    if unknown:
        raise InvalidInput(f"unknown form field {sorted(unknown)[0]}", field=sorted(unknown)[0])
    return data


@router.post(
    "/send",
    status_code=202,
    response_model=SendAccepted,
    openapi_extra=_SEND_OPERATION,
    responses={
        409: {"description": "The Idempotency-Key was used for a different request."},
        413: {"description": "The message is over the size limit."},
        422: {"description": "A field is wrong; the error names it. Nothing was queued."},
        429: {"description": "Over a send rate limit; see Retry-After."},
    },
)
async def send_message(request: Request) -> Response:
    """Queue a message; 202 means it is stored durably and every recipient has a delivery.

    JSON as in the schema, or multipart/form-data with the same fields (lists repeated,
    ``headers``/``variables`` as JSON text) and files under ``attachments``.
    """
    # The busiest write of the API, so it spends as little as it can on the framework: no
    # dependency for FastAPI to resolve (each costs on every request; together they were a
    # tenth of a send's time on the event loop), the token, the send budget and the
    # Idempotency-Key read here and described in the OpenAPI document by _SEND_OPERATION,
    # and the 202 written by the response model itself instead of being validated and
    # encoded again by FastAPI.
    user = await sending_user(request, await current_user(request, await bearer(request)))
    idempotency_key = request.headers.get("idempotency-key")
    store: Storage = request.app.state.store
    body = await read_send_request(request, store.settings.max_message_size)
    if idempotency_key is None:
        return _accepted(accepted(await send(store, user, body)), replayed=False)
    if not _KEY.match(idempotency_key):
        raise InvalidInput(
            "an Idempotency-Key is 1 to 255 printable ASCII characters", field="Idempotency-Key"
        )
    result, replayed = await send_once(store, user, body, idempotency_key)
    return _accepted(result, replayed=replayed)


def _accepted(result: dict[str, Any], *, replayed: bool) -> Response:
    return Response(
        SendAccepted.model_validate(result).model_dump_json(),
        status_code=202,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"} if replayed else None,
    )


@router.get("/send/{outbound_id}", response_model=SendStatus)
async def get_send(
    store: Store, user: CurrentUser, _rate: ReadLimit, outbound_id: str
) -> SendStatus:
    """What became of each recipient of one of your sends; another user's is a 404."""
    async with store.db.reader() as session:
        outbound, rows = await send_status(session, user.id, outbound_id)
    return SendStatus(
        id=outbound.id,
        message_id=outbound.sent_message_id,
        created_at=outbound.created_at,
        recipients=[_state(delivery, recipient) for delivery, recipient in rows],
    )


@router.delete(
    "/send/{outbound_id}",
    status_code=204,
    responses={409: {"description": "It has already gone out (in part or whole)."}},
)
async def cancel_send(store: Store, user: CurrentUser, outbound_id: str) -> Response:
    """Cancel a send that has not gone out (scheduled, or in the undo window).

    All or nothing: every recipient becomes ``cancelled`` and the copy in Sent is deleted, or,
    if any of it has gone out, 409 and nothing changes. Cancelling twice is fine.
    """
    await cancel(store, user.id, outbound_id)
    return Response(status_code=204)


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
