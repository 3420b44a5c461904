"""Downloading one attachment of one of your messages.

An attachment is addressed through its message, because attachments are stored once per
distinct message and shared by every copy: the message id is what proves the reader owns it.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway.deps import CurrentUser, Store
from gateway.disposition import attachment_headers, safe_content_type
from storage.repositories.mail import get_attachment

router = APIRouter(prefix="/messages", tags=["messages"])


@router.get(
    "/{message_id}/attachments/{attachment_id}",
    response_class=Response,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "The attachment's bytes, with its declared Content-Type, as a "
            "download (Content-Disposition: attachment; X-Content-Type-Options: nosniff).",
        },
        404: {"description": "No such attachment on a message of yours."},
    },
)
async def download_attachment(
    store: Store, user: CurrentUser, message_id: str, attachment_id: str
) -> Response:
    async with store.db.session() as session:
        attachment = await get_attachment(session, user.id, message_id, attachment_id)
    data = await store.blobs.get(attachment.blob_key)
    return Response(
        data,
        media_type=safe_content_type(attachment.content_type),
        headers=attachment_headers(attachment.filename),
    )
