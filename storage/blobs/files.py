"""Blobs as files under the data directory (the embedded default).

A blob is written to a temporary file, fsynced, renamed into place and its directory fsynced,
so a crash leaves either the whole blob or none of it. File I/O runs in a thread, except the
read of a small blob (see ``INLINE_READ``).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from postroom.durable_files import write_durably
from postroom.errors import BlobNotFound, ConfigurationError
from storage.blobs import blob_key

__all__ = ["FileBlobStore"]

_KEY = re.compile(r"^[0-9a-f]{64}$")

INLINE_READ = 64 * 1024
"""Bytes of a blob read on the event loop; the rest, if any, is read in a thread. Handing a
read to a thread and back costs about 100 µs of CPU, ten times reading a few kilobytes from
the page cache, and most blobs are messages of a few kilobytes (smtp-out reads one per
delivery attempt)."""


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str) -> FileBlobStore:
        path = url.removeprefix("file://")
        if not path:
            raise ConfigurationError(f"blob URL {url!r} names no directory (file:///path)")
        return cls(Path(path))

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise BlobNotFound(f"{key!r} is not a blob key")
        return self.root / key[:2] / key[2:4] / key

    async def put(self, data: bytes) -> str:
        key = blob_key(data)
        await asyncio.to_thread(self._write, self._path(key), data)
        return key

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.exists() and path.stat().st_size == len(data):
            return
        write_durably(path, data)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {key} is missing from {self.root}") from None
        with file:
            head = file.read(INLINE_READ + 1)
            if len(head) <= INLINE_READ:
                return head
            return head + await asyncio.to_thread(file.read)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).exists)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def close(self) -> None:
        return None
