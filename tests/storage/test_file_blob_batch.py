"""Blobs as files: puts that arrive together are made durable as one batch.

Concurrent small puts share one ``syncfs`` (``FileBlobStore._write_in_place``, ``sync_all``),
other puts one thread call (``FileBlobStore._write``, ``write_all_durably``); what a caller
sees must not change: every blob lands whole under its key, a blob that cannot be written
fails its own caller only, and nothing temporary is left behind. The batches here are real:
``asyncio.gather`` submits every put before the writer first runs.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from postroom import durable_files
from postroom.durable_files import write_all_durably, write_durably
from postroom.filesystem_sync import flushes_together
from storage.blobs.files import IN_PLACE, MAX_BATCH, FileBlobStore


def _key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blob_path(root: Path, key: str) -> Path:
    return root / key[:2] / key[2:4] / key


def _leftovers(root: Path) -> list[Path]:
    return sorted(root.rglob(".tmp-*"))


def _payloads_apart_from(key: str, count: int) -> list[bytes]:
    """``count`` payloads none of which shares ``key``'s top directory."""
    found: list[bytes] = []
    n = 0
    while len(found) < count:
        data = f"other message {n}\r\n".encode()
        if _key(data)[:2] != key[:2]:
            found.append(data)
        n += 1
    return found


def _payload_in_directory_of(key: str) -> bytes:
    """A payload whose blob goes in the same ``ab/cd`` directory as ``key``'s."""
    n = 0
    while True:
        data = f"neighbour {n}".encode()
        if _key(data)[:4] == key[:4] and _key(data) != key:
            return data
        n += 1


async def test_many_concurrent_puts_all_land_whole_under_their_keys(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    distinct = [f"message {n}\r\n".encode() * (n + 1) for n in range(MAX_BATCH + 20)]
    distinct.append(b"")
    distinct.append(bytes(range(256)) * 4096)  # 1 MiB: more than one write(2) may take
    repeated = [b"the same attachment"] * 30 + [distinct[0]] * 5
    payloads = distinct + repeated

    keys = await asyncio.gather(*(blobs.put(data) for data in payloads))

    assert keys == [_key(data) for data in payloads]
    contents = await asyncio.gather(*(blobs.get(key) for key in keys))
    assert contents == payloads
    on_disk = sorted(p for p in root.rglob("*") if p.is_file())
    assert on_disk == sorted({_blob_path(root, key) for key in keys})
    for key, data in zip(keys, payloads, strict=True):
        assert _blob_path(root, key).read_bytes() == data
    assert _leftovers(root) == []


async def test_puts_of_bytes_being_written_meanwhile_store_them_once(
    tmp_path: Path,
) -> None:
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    first = asyncio.gather(*(blobs.put(f"first {n}".encode()) for n in range(10)))
    await asyncio.sleep(0)  # the first batch is being written while these arrive
    again = await asyncio.gather(*(blobs.put(f"first {n}".encode()) for n in range(10)))

    assert await first == again
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == sorted(set(again))
    assert _leftovers(root) == []


@pytest.mark.parametrize("blocked", ["ab/cd", "ab"])
async def test_a_put_that_cannot_be_written_fails_alone(tmp_path: Path, blocked: str) -> None:
    """A regular file where the blob's directory should be (root ignores chmod): that put
    raises, the puts in the same batch still land, and nothing is left half-written."""
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    doomed = b"this blob has nowhere to go"
    key = _key(doomed)
    in_the_way = root / key[:2] if blocked == "ab" else root / key[:2] / key[2:4]
    in_the_way.parent.mkdir(parents=True, exist_ok=True)
    in_the_way.write_bytes(b"not a directory")
    others = _payloads_apart_from(key, 20)

    results = await asyncio.gather(
        *(blobs.put(data) for data in [*others[:10], doomed, *others[10:]]),
        return_exceptions=True,
    )

    failure = results[10]
    assert isinstance(failure, NotADirectoryError)
    assert str(in_the_way) in str(failure)
    assert results[:10] + results[11:] == [_key(data) for data in others]
    for data in others:
        assert await blobs.get(_key(data)) == data
    assert not await blobs.exists(key)
    assert in_the_way.read_bytes() == b"not a directory"
    assert _leftovers(root) == []


async def test_a_failed_put_can_succeed_once_the_obstacle_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    data = b"retried by the sender"
    key = _key(data)
    (root / key[:2]).write_bytes(b"in the way")
    with pytest.raises(NotADirectoryError):
        await blobs.put(data)

    (root / key[:2]).unlink()

    assert await blobs.put(data) == key
    assert await blobs.get(key) == data


@pytest.mark.parametrize("removed", ["ab/cd", "ab", "root"])
async def test_a_put_after_its_directory_was_removed_behind_the_stores_back(
    tmp_path: Path, removed: str
) -> None:
    """The store remembers the directories it made; one deleted since is made again."""
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    first = b"the first message in this directory"
    key = _key(first)
    assert await blobs.put(first) == key
    shutil.rmtree({"ab/cd": root / key[:2] / key[2:4], "ab": root / key[:2], "root": root}[removed])
    neighbour = _payload_in_directory_of(key)

    keys = await asyncio.gather(blobs.put(first), blobs.put(neighbour))

    assert list(keys) == [key, _key(neighbour)]
    assert await blobs.get(key) == first
    assert await blobs.get(_key(neighbour)) == neighbour
    assert _leftovers(root) == []


async def test_a_blob_of_the_wrong_size_under_its_key_is_rewritten(tmp_path: Path) -> None:
    """Only a file of the right size counts as the blob already stored."""
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    data = b"the whole message"
    path = _blob_path(root, _key(data))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"the whole")

    assert await blobs.put(data) == _key(data)
    assert path.read_bytes() == data


def test_write_durably_replaces_a_file_of_the_same_size(tmp_path: Path) -> None:
    """The TLS key and certificate are rewritten whatever their size: no blob shortcut."""
    path = tmp_path / "tls" / "new" / "key.pem"
    write_durably(path, b"old key")
    write_durably(path, b"new key")

    assert path.read_bytes() == b"new key"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["key.pem", "new", "tls"]


def test_write_all_durably_reports_each_failure_in_its_own_place(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"a file, not a directory")
    items = [
        (str(tmp_path / "a" / "one"), b"1"),
        (str(tmp_path / "file" / "two"), b"2"),
        (str(tmp_path / "a" / "b" / "three"), b"3"),
        (str(tmp_path / "a" / "one"), b"one again"),
    ]

    errors = write_all_durably(items)

    assert errors[0] is None and errors[2] is None and errors[3] is None
    assert isinstance(errors[1], NotADirectoryError)
    assert (tmp_path / "a" / "one").read_bytes() == b"one again"  # the later item wins
    assert (tmp_path / "a" / "b" / "three").read_bytes() == b"3"
    assert sorted(tmp_path.rglob(".tmp-*")) == []


class _Calls:
    """Counts the real ``syncfs`` and ``fsync`` calls of a batch (each still does its work)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, syncfs_error: int | None) -> None:
        self.syncfs = 0
        self.fsync = 0
        real_syncfs = durable_files.sync_filesystem
        real_fsync = os.fsync

        def syncfs(fd: int) -> None:
            self.syncfs += 1
            if syncfs_error is not None:
                raise OSError(syncfs_error, os.strerror(syncfs_error))
            real_syncfs(fd)

        def fsync(fd: int) -> None:
            self.fsync += 1
            real_fsync(fd)

        monkeypatch.setattr(durable_files, "sync_filesystem", syncfs)
        monkeypatch.setattr(durable_files.os, "fsync", fsync)


def _batch(root: Path, count: int) -> list[tuple[str, bytes]]:
    payloads = [f"message {n}\r\n".encode() for n in range(count)]
    return [(str(_blob_path(root, _key(data))), data) for data in payloads]


def test_a_batch_flushed_together_costs_two_syncfs_and_no_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _batch(tmp_path, 20)
    calls = _Calls(monkeypatch, syncfs_error=None)
    known: set[str] = set()

    errors = write_all_durably(items, known, flush_together=True)

    assert errors == [None] * 20
    assert (calls.syncfs, calls.fsync) == (2, 0)
    for path, data in items:
        assert Path(path).read_bytes() == data
    made = {os.path.dirname(p) for p, _ in items} | {
        os.path.dirname(os.path.dirname(p)) for p, _ in items
    }
    assert made <= known  # no directory of theirs is fsynced again by a later batch
    assert _leftovers(tmp_path) == []


def test_when_syncfs_reports_an_error_each_file_and_directory_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _batch(tmp_path, 5)
    calls = _Calls(monkeypatch, syncfs_error=errno.EIO)

    errors = write_all_durably(items, flush_together=True)

    assert errors == [None] * 5
    directories = {os.path.dirname(p) for p, _ in items}
    parents = {os.path.dirname(d) for d in directories}
    assert calls.syncfs == 1  # the first failed: the files were fsynced instead
    assert calls.fsync == len(items) + len(directories) + len(parents) + 1  # + tmp_path
    for path, data in items:
        assert Path(path).read_bytes() == data


@pytest.mark.parametrize(("size", "flushes"), [(20, 1), (IN_PLACE + 1, 2)])
async def test_puts_made_together_on_a_local_disk_share_their_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, flushes: int
) -> None:
    """Small blobs are created in place and share one flush; larger ones go by a temporary
    file and a rename, with one flush before the renames and one after."""
    root = tmp_path / "blobs"
    assert flushes_together(str(tmp_path))  # ext4 or tmpfs on these machines
    blobs = FileBlobStore(root)
    payloads = [f"message {n}\r\n".encode().ljust(size, b".") for n in range(30)]
    calls = _Calls(monkeypatch, syncfs_error=None)

    keys = await asyncio.gather(*(blobs.put(data) for data in payloads))

    assert (calls.syncfs, calls.fsync) == (flushes, 0)
    assert [await blobs.get(key) for key in keys] == payloads
    assert _leftovers(root) == []


async def test_when_syncfs_fails_each_small_blob_and_its_directories_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    payloads = [f"message {n}\r\n".encode() for n in range(5)]
    calls = _Calls(monkeypatch, syncfs_error=errno.EIO)

    keys = await asyncio.gather(*(blobs.put(data) for data in payloads))

    paths = [_blob_path(root, key) for key in keys]
    directories = {p.parent for p in paths} | {p.parent.parent for p in paths} | {root}
    assert calls.syncfs == 1
    assert calls.fsync == len(paths) + len(directories)
    assert [p.read_bytes() for p in paths] == payloads


@pytest.mark.parametrize("left", ["zeros", "a prefix"])
async def test_a_small_blob_cut_short_by_a_crash_is_written_again(
    tmp_path: Path, left: str
) -> None:
    """A crash between a small blob's creation and its flush can leave its name holding
    less, or (on some filesystems) zeros of the right size; the next put of it repairs it."""
    root = tmp_path / "blobs"
    blobs = FileBlobStore(root)
    data = b"a message whose first put never reached the disk"
    path = _blob_path(root, _key(data))
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(len(data)) if left == "zeros" else data[:10])

    assert await blobs.put(data) == _key(data)

    assert path.read_bytes() == data
    assert await blobs.get(_key(data)) == data
    assert _leftovers(root) == []
