"""The change feed: what changed in your mail after a sequence number you hold.

A client keeps the ``latest`` it was given and asks again with ``?since=``; the answer lists
each change once, oldest first. When the log no longer reaches back that far the answer is
410 (code ``resync``): reload mailboxes and messages, then continue from the new ``latest``.
The realtime push and the long-poll fallback read the same log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway.deps import CurrentUser, Store
from gateway.schemas import ChangeList, ChangeOut
from storage.repositories.changes import changes_since, current_seq

router = APIRouter(prefix="/changes", tags=["changes"])


@router.get(
    "",
    response_model=ChangeList,
    responses={410: {"description": "`since` is too old or unknown: load your state again."}},
)
async def list_changes(
    store: Store,
    user: CurrentUser,
    since: Annotated[
        int | None,
        Query(ge=0, description="The last seq you have; leave out to learn the current one."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> ChangeList:
    async with store.db.session() as session:
        if since is None:
            return ChangeList(items=[], latest=await current_seq(session, user.id), more=False)
        events = await changes_since(session, user.id, since, limit=limit)
    items = [ChangeOut(seq=e.seq, type=e.type, data=e.data) for e in events]
    return ChangeList(
        items=items,
        latest=items[-1].seq if items else since,
        more=len(items) == limit,
    )
