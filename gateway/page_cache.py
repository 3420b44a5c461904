"""Rendered list pages, valid for as long as their user's change log has not moved.

Every change a user can see in a mailbox listing (a new copy, flags, a move, a delete, a folder
created, renamed or deleted) appends to that user's change log in the same transaction
(:mod:`storage.transaction`), which bumps ``users.change_seq``. A page rendered when the log
stood at ``seq`` is therefore exactly what a fresh query would return for as long as
``change_seq`` is still ``seq``: a repeat request costs no read of its own (the token check
read ``change_seq`` with the user, :func:`gateway.deps.change_seq_read`) instead of the mailbox
lookup, the page query and rendering 50 items. Read ``change_seq`` *before* the page:
a change committed in between leaves the page newer than its ``seq``, so the next request
misses and renders again; a page is never older than the ``seq`` it is stored under.

In process, bounded, least recently used out first; nothing to invalidate across processes,
since every process compares against the database's ``change_seq``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["PageCache"]


class PageCache:
    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._pages: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()

    def get(self, key: Hashable, seq: int) -> bytes | None:
        """The page stored under ``key`` if it was rendered at change ``seq``."""
        entry = self._pages.get(key)
        if entry is None or entry[0] != seq:
            return None
        self._pages.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, seq: int, body: bytes) -> None:
        self._pages[key] = (seq, body)
        self._pages.move_to_end(key)
        while len(self._pages) > self.size:
            self._pages.popitem(last=False)
