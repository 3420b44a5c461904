"""The suppression list: addresses we refuse to send to because they bounced for good.

Sending again to an address that does not exist hurts the reputation of every user of the
platform with the receiving providers, so a hard bounce puts the address here and the gateway
refuses new sends to it. Entries expire (``POSTROOM_SUPPRESSION_DAYS``) because mailboxes come
back, and an administrator can remove one at once. Addresses are kept lowercased, the form
sends are checked in.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from postroom.addresses import normalize_address
from postroom.errors import InvalidInput
from storage.db.database import insert_or_update
from storage.db.models import Suppression
from storage.db.types import utcnow

__all__ = ["active", "list_all", "remove", "suppress"]

MAX_REASON = 1000


def _unexpired(now: datetime) -> ColumnElement[bool]:
    return or_(Suppression.expires_at.is_(None), Suppression.expires_at > now)


async def suppress(
    session: AsyncSession,
    address: str,
    reason: str,
    days: float | None,
    *,
    source: str = "bounce",
    now: datetime | None = None,
) -> None:
    """Suppress ``address`` for ``days`` (None: until removed), or refresh its entry.

    A new hard bounce of an address already listed replaces the reason and restarts both the
    time and the expiry: the entry always tells of the latest bounce.
    """
    when = now or utcnow()
    values = {
        "address": address.lower(),
        "reason": reason[:MAX_REASON],
        "source": source,
        "created_at": when,
        "expires_at": when + timedelta(days=days) if days is not None else None,
    }
    await session.execute(insert_or_update(session, Suppression, values, key=["address"]))


async def active(
    session: AsyncSession, addresses: Iterable[str], *, now: datetime | None = None
) -> dict[str, Suppression]:
    """The unexpired entries among ``addresses``, by lowercased address."""
    wanted = sorted({a.lower() for a in addresses})
    if not wanted:
        return {}
    rows = await session.scalars(
        select(Suppression).where(Suppression.address.in_(wanted), _unexpired(now or utcnow()))
    )
    return {row.address: row for row in rows}


async def list_all(
    session: AsyncSession, *, include_expired: bool = False, now: datetime | None = None
) -> list[Suppression]:
    """Entries by address; expired ones block nothing, so they are left out unless asked for."""
    query = select(Suppression).order_by(Suppression.address)
    if not include_expired:
        query = query.where(_unexpired(now or utcnow()))
    return list(await session.scalars(query))


async def remove(session: AsyncSession, address: str) -> bool:
    """Delete the entry of ``address`` (as a person types it); False if there was none."""
    result = await session.execute(
        delete(Suppression)
        .where(Suppression.address == _stored_form(address))
        .returning(Suppression.id)
    )
    return result.first() is not None


def _stored_form(address: str) -> str:
    """Sends store addresses normalised and lowercased; one we cannot read is taken as is."""
    try:
        return normalize_address(address.strip()).lower()
    except InvalidInput:
        return address.strip().lower()
