"""The one interface every search backend offers, and what a search asks of it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from search.query import Node
from storage.db.models import Message

__all__ = ["Found", "Progress", "SearchBackend", "SearchRequest"]

Progress = Callable[[int], None]
"""Called with how many more items were done, for progress bars."""


@dataclass(frozen=True)
class SearchRequest:
    user_id: str
    query: Node
    limit: int
    offset: int = 0
    mailboxes: Mapping[str, str] = field(default_factory=dict)
    """``in:`` names as written (lower-cased) -> that user's mailbox id."""


@dataclass
class Found:
    """A matching message of the user and its body as plain text (for the snippet)."""

    message: Message
    body: str


class SearchBackend(Protocol):
    """Answers queries over ``search_documents`` joined with the user's ``messages``.

    Every backend reads the same rows: the SQL backends through their engine's own index on
    that table, OpenSearch through documents it copies from it.
    """

    name: str

    async def search(self, request: SearchRequest) -> list[Found]:
        """The user's matching messages, best first (relevance, then newest).

        One round trip where the engine is the database: the page's rows and bodies come
        with the match, which is what keeps a search close to the raw engine's speed.
        """
        ...

    async def catch_up(self, user_id: str) -> None:
        """Apply changes the index has not seen yet (no-op where the database is the index)."""
        ...

    async def rebuild(self, user_id: str | None, progress: Progress) -> None:
        """Re-copy the user's (or everyone's) documents into the engine, if it keeps its own."""
        ...

    async def close(self) -> None: ...
