"""Address autocomplete: the people the signed-in user has corresponded with.

There is no address book; the user's own mail is one. Two sources, both scoped to the user:
the senders of their messages (matched in SQL on address or name), and the recipients of the
mail they sent (the newest ``SENT_SCAN`` of their own messages, matched here, since the
recipient lists are JSON columns no portable index can search). People written to or heard
from more often come first.
"""

from __future__ import annotations

from collections import Counter
from email.utils import getaddresses
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select

from gateway.deps import CurrentUser, Store
from gateway.schemas import Person
from storage.db.models import Message

__all__ = ["ContactList", "router"]

router = APIRouter(prefix="/contacts", tags=["contacts"])

SENT_SCAN = 500
SENDER_ROWS = 200


class ContactList(BaseModel):
    items: list[Person] = Field(description="Most corresponded with first.")


@router.get("", response_model=ContactList)
async def contacts(
    store: Store,
    user: CurrentUser,
    q: Annotated[
        str, Query(max_length=255, description="Part of a name or address; empty for all.")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> ContactList:
    """Your correspondents whose name or address contains ``q`` (any case)."""
    needle = q.strip().lower()
    own = user.address.lower()
    weight: Counter[str] = Counter()
    names: dict[str, str] = {}
    shown: dict[str, str] = {}  # the spelling first seen, as local parts may keep case
    senders = (
        select(
            Message.from_address,
            func.max(Message.from_name),
            func.count(),
        )
        .where(Message.user_id == user.id, Message.from_address != "")
        .group_by(Message.from_address)
        .order_by(func.count().desc())
        .limit(SENDER_ROWS)
    )
    if needle:
        senders = senders.where(
            or_(
                Message.from_address.icontains(needle, autoescape=True),
                Message.from_name.icontains(needle, autoescape=True),
            )
        )
    sent = (
        select(Message.to_addresses, Message.cc_addresses, Message.bcc_addresses)
        .where(Message.user_id == user.id, func.lower(Message.from_address) == own)
        .order_by(Message.received_at.desc())
        .limit(SENT_SCAN)
    )
    async with store.db.session() as session:
        for address, name, count in await session.execute(senders):
            key = address.lower()
            weight[key] += count
            names.setdefault(key, name or "")
            shown.setdefault(key, address)
        for to, cc, bcc in await session.execute(sent):
            for name, address in getaddresses([*to, *cc, *bcc]):
                key = address.lower()
                if "@" not in key or (needle not in key and needle not in name.lower()):
                    continue
                weight[key] += 1
                shown.setdefault(key, address)
                if name and not names.get(key):
                    names[key] = name
    weight.pop(own, None)
    ranked = sorted(weight, key=lambda key: (-weight[key], key))[:limit]
    return ContactList(
        items=[Person(name=names.get(key, ""), address=shown[key]) for key in ranked]
    )
