"""Blob storage: raw messages and attachments, addressed by the SHA-256 of their bytes.

Content addressing makes writes idempotent (a retry writes the same key) and stores a file sent
to 500 people once. ``put`` returns only when the bytes are durable.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

__all__ = ["BlobStore", "blob_key"]


def blob_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    async def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its key."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; raises :class:`postroom.errors.BlobNotFound`."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...
