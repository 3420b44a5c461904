"""Blobs as files under the data directory (the embedded default).

A blob's name is the SHA-256 of its bytes, so a file under that name must hold exactly them,
and ``put`` answers only once they are durable. Two ways there:

- **Small blobs** (up to ``IN_PLACE``, nearly every message) on a filesystem where
  ``syncfs`` makes files durable (:mod:`postroom.filesystem_sync`) are created under their
  final names (``O_EXCL``), and the puts that arrive together share one ``syncfs`` before
  any is answered. A crash before that flush can leave a file cut short under its name, but
  no row points at it yet (the row is written after ``put`` returns), and a later put of the
  same bytes reads the file before trusting it and writes it again if it differs. The files
  are made in the batch's thread, not on the event loop: creating a file or a directory
  waits for the filesystem's journal, which a ``syncfs`` under way holds for milliseconds
  (a third of a millisecond a blob on average, measured on the loop under the send load).
- **Everything else** goes through :func:`postroom.durable_files.write_all_durably` in a
  thread: a temporary file, fsynced (or the batch's ``syncfs``), renamed into place, the
  directory made durable, so a crash leaves the whole blob or none of it. Puts that arrive
  while a batch is written go together in the next (group commit,
  ``storage/queues/group_commit.py``).

Under 50 concurrent API sends the first way is one ``syncfs`` a batch where the second was
two (before and after the renames), and no temporary names to draw and rename. Either way
each caller is answered once its own blob is durable, and a blob that cannot be written
fails its own caller only. File reads run in a thread, except the read of a small blob (see
``INLINE_READ``).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Sequence
from pathlib import Path

from postroom.durable_files import create_exclusive, sync_all, write_all_durably
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

IN_PLACE = 64 * 1024
"""Bytes of a blob written under its final name and flushed with one ``syncfs`` (module
docstring)."""

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
        self._in_place: GroupCommit[tuple[str, bytes], OSError | None] = GroupCommit(
            self._in_place_batch, max_batch=MAX_BATCH
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

    def _file(self, key: str) -> str:
        """The file of the blob ``key``, a SHA-256 computed here (``_path`` checks a caller's)."""
        return f"{self._base}/{key[:2]}/{key[2:4]}/{key}"

    async def put(self, data: bytes) -> str:
        key = blob_key(data)
        if self._together and len(data) <= IN_PLACE:
            error = await self._in_place.submit((self._file(key), data))
        else:
            error = await self._writes.submit((key, data))
        if error is not None:
            raise error
        return key

    async def _in_place_batch(self, puts: Sequence[tuple[str, bytes]]) -> list[OSError | None]:
        return await asyncio.to_thread(self._write_in_place, puts)

    def _write_in_place(self, puts: Sequence[tuple[str, bytes]]) -> list[OSError | None]:
        """In the thread: each small blob created under its name (or found there, whole),
        then one ``syncfs`` for them all; one that cannot be, the long way."""
        answers: list[OSError | None] = [None] * len(puts)
        created: list[int] = []
        other: list[int] = []
        for index, (path, data) in enumerate(puts):
            (created if _created(path, data) else other).append(index)
        synced = sync_all([puts[i][0] for i in created], flush_together=True)
        written = write_all_durably([puts[i] for i in other], self._dirs, flush_together=True)
        for index, error in zip([*created, *other], [*synced, *written], strict=True):
            answers[index] = error
        return answers

    async def _write_batch(self, puts: Sequence[tuple[str, bytes]]) -> list[OSError | None]:
        return await asyncio.to_thread(self._write, puts)

    def _write(self, puts: Sequence[tuple[str, bytes]]) -> list[OSError | None]:
        """In the thread: each distinct blob not on disk yet, all in one durable batch.

        A blob already there is skipped (:func:`_stored`). The same blob put twice in a
        batch is written once and answers both callers.
        """
        slot: dict[str, int] = {}
        writes: list[tuple[str, bytes]] = []
        for key, data in puts:
            if key in slot:
                continue
            path = self._file(key)
            if _stored(path, data):
                slot[key] = -1
                continue
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


def _created(path: str, data: bytes) -> bool:
    """Whether ``path`` now holds ``data`` (in the page cache, not yet durable): made here
    with ``O_EXCL``, or found holding it. ``False`` sends the put the long way, which
    replaces a file that differs and reports an error that is really there."""
    try:
        create_exclusive(path, data)
    except FileExistsError:
        return _holds(path, data)
    except OSError:
        return False
    return True


def _stored(path: str, data: bytes) -> bool:
    """Whether the blob is already under its name. A small blob may have been cut short by a
    crash before its flush (module docstring), so its bytes are compared; a larger one only
    ever arrives by a rename after an fsync, so its size says enough."""
    if len(data) <= IN_PLACE:
        return _holds(path, data)
    try:
        return os.stat(path).st_size == len(data)
    except OSError:
        return False  # absent, or unreachable: the write says why


def _holds(path: str, data: bytes) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(data) + 1) == data
    except OSError:
        return False
