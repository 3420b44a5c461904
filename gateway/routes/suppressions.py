"""The suppression list, for administrators only.

It is platform-wide: it names the correspondents of every user whose mail hard-bounced, so
an ordinary user gets 403 here (the route exists for everyone, so hiding it behind a 404
would protect nothing).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway.deps import AdminUser, Store
from gateway.schemas import SuppressionList, SuppressionOut
from postroom.errors import NotFound
from storage.repositories import suppressions

router = APIRouter(prefix="/suppressions", tags=["suppressions"])


@router.get("", response_model=SuppressionList)
async def list_suppressions(store: Store, admin: AdminUser) -> SuppressionList:
    """Addresses sends are refused to, until each entry expires or is removed."""
    async with store.db.session() as session:
        rows = await suppressions.list_all(session)
    return SuppressionList(
        items=[
            SuppressionOut(
                address=row.address,
                reason=row.reason,
                source=row.source,
                created_at=row.created_at,
                expires_at=row.expires_at,
            )
            for row in rows
        ]
    )


@router.delete("/{address}", status_code=204, response_class=Response)
async def remove_suppression(store: Store, admin: AdminUser, address: str) -> Response:
    """Allow sending to ``address`` again."""
    async with store.db.session() as session, session.begin():
        removed = await suppressions.remove(session, address)
    if not removed:
        raise NotFound(f"{address} is not on the suppression list")
    return Response(status_code=204)
