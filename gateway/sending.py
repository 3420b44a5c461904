"""Sending from the API: compose and size-check the request, then hand it to the outbox."""

from __future__ import annotations

from gateway.compose import Composed, compose
from gateway.errors import PayloadTooLarge
from gateway.schemas import SendRequest
from storage.db.models import User
from storage.outbox import Origin, submit
from storage.registry import Storage
from storage.repositories.outbound import RecordedSend

__all__ = ["send"]


async def send(store: Storage, user: User, request: SendRequest) -> RecordedSend:
    settings = store.settings
    composed = compose(request, sender=user.address, hostname=settings.hostname)
    if len(composed.raw) > settings.max_message_size:
        raise PayloadTooLarge(
            f"the message is {len(composed.raw)} bytes; the limit is {settings.max_message_size}",
            field="body",
        )
    return await submit(
        store,
        user,
        composed.raw,
        recipients=composed.recipients,
        bcc=composed.bcc,
        origins=_origins(composed),
    )


def _origins(composed: Composed) -> dict[str, Origin]:
    """Each recipient's first request field, so an error points at it."""
    origins: dict[str, Origin] = {}
    for name, values in (("to", composed.to), ("cc", composed.cc), ("bcc", composed.bcc)):
        for index, address in enumerate(values):
            origins.setdefault(address.lower(), Origin(f"{name}[{index}]", address))
    return origins
