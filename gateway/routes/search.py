"""Searching the signed-in user's mail with the query language of :mod:`search.query`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from gateway.deps import CurrentUser, Store
from gateway.routes.messages import message_item
from gateway.schemas import MessageItem
from search.backend import SearchBackend
from search.registry import open_search
from search.service import search_messages

__all__ = ["SearchItem", "SearchResults", "router"]

router = APIRouter(prefix="/search", tags=["search"])

QUERY_HELP = (
    'Words, "quoted phrases", from: to: cc: subject: body: filename: has:attachment '
    "is:unread|read|flagged in:MAILBOX before:/after:YYYY-MM-DD older_than:/newer_than:7d "
    "larger:/smaller:2M, OR, -word to leave out, parentheses."
)


class SearchItem(MessageItem):
    """A message list item plus where the query matched."""

    highlight: str = Field(
        description="HTML: a piece of the body around the first match, matches in <mark>, "
        "everything else escaped."
    )
    subject_highlight: str = Field(description="HTML: the subject, matches in <mark>, escaped.")


class SearchResults(BaseModel):
    items: list[SearchItem] = Field(description="Best match first; equally good ones newest first.")
    next_cursor: str | None = Field(
        description="Pass as ?cursor= with the same q for the next page; null on the last page."
    )


def search_backend(request: Request) -> SearchBackend:
    """One backend per app, opened on first use from the settings' search URL."""
    backend: SearchBackend | None = getattr(request.app.state, "search", None)
    if backend is None:
        backend = open_search(request.app.state.store)
        request.app.state.search = backend
    return backend


@router.get("", response_model=SearchResults, response_model_by_alias=True)
async def search(
    store: Store,
    user: CurrentUser,
    backend: Annotated[SearchBackend, Depends(search_backend)],
    q: Annotated[str, Query(max_length=1000, description=QUERY_HELP)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> SearchResults:
    """Your messages matching ``q``, in every mailbox unless ``in:`` says otherwise."""
    page = await search_messages(store, backend, user.id, q, limit=limit, cursor=cursor)
    return SearchResults(
        items=[
            SearchItem(
                **message_item(hit.message).model_dump(),
                highlight=hit.highlight,
                subject_highlight=hit.subject_highlight,
            )
            for hit in page.items
        ],
        next_cursor=page.next_cursor,
    )
