"""Blobs as files under the data directory (the embedded default).

A blob is written to a temporary file, fsynced, renamed into place and its directory fsynced,
so a crash leaves either the whole blob or none of it. File I/O runs in a thread, except the
read of a small blob (see ``INLINE_READ``).

Puts that arrive while a write is under way are written together by one thread call (group
commit, ``storage/queues/group_commit.py``): under 50 concurrent sends, one thread hop for the
batch instead of one a put, one ``syncfs`` before the renames and one after instead of an
fsync per file and per directory where the filesystem allows (``postroom/filesystem_sync.py``;
elsewhere fsyncs ordered so a journal folds them together, ``write_all_durably``), and one
thread instead of several fighting the event loop for the GIL. Each caller is answered once
its own blob is durable; a blob that cannot be written fails its own caller only.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from pathlib import Path

from postroom.durable_files import write_all_durably
from postroom.errors import BlobNotFound, ConfigurationError
from postroom.filesystem_sync import flushes_together
from storage.blobs import blob_key
from storage.queues.group_commit import GroupCommit

__all__ = ["FileBlobStore"]

_KEY = re.compile(r"^[0-9a-f]{64}$")

INLINE_READ = 64 * 1024
"""Bytes of a blob read on the event loop; the rest, if any, is read in a thread. Handing a
read to a thread and back costs about 100 µs of CPU, ten times reading a few kilobytes from
the page cache, and most blobs are messages of a few kilobytes (smtp-out reads one per
delivery attempt)."""

MAX_BATCH = 64
"""Blobs written by one thread call at most; each holds a file descriptor until renamed."""


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._base = os.fspath(root)
        self._together = flushes_together(self._base)
        self._dirs: set[str] = set()
        """Directories (``ab``, ``ab/cd``) known to exist, their entries fsynced: no ``mkdir``
        a put. Only the batch writer's thread touches it, one batch at a time."""
        self._writes: GroupCommit[tuple[str, bytes], OSError | None] = GroupCommit(
            self._write_batch, max_batch=MAX_BATCH
        )

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
        error = await self._writes.submit((key, data))
        if error is not None:
            raise error
        return key

    async def _write_batch(self, puts: Sequence[tuple[str, bytes]]) -> list[OSError | None]:
        return await asyncio.to_thread(self._write, puts)

    def _write(self, puts: Sequence[tuple[str, bytes]]) -> list[OSError | None]:
        """In the thread: each distinct blob not on disk yet, all in one durable batch.

        A blob already there with the right size is skipped: its name is its SHA-256, and
        it got there by a rename after an fsync. A size that differs is not that blob.
        The same blob put twice in a batch is written once and answers both callers.
        """
        slot: dict[str, int] = {}
        writes: list[tuple[str, bytes]] = []
        for key, data in puts:
            if key in slot:
                continue
            path = f"{self._base}/{key[:2]}/{key[2:4]}/{key}"
            try:
                if os.stat(path).st_size == len(data):
                    slot[key] = -1
                    continue
            except OSError:
                pass  # absent, or unreachable: the write says why
            slot[key] = len(writes)
            writes.append((path, data))
        errors = (
            write_all_durably(writes, self._dirs, flush_together=self._together) if writes else []
        )
        return [None if slot[key] < 0 else errors[slot[key]] for key, _ in puts]

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
