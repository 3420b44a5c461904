"""Blobs as files: what only the file store has (paths on disk, temporary files).

The behaviour every blob store shares is tested once for all of them in ``test_blobs.py``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from postroom.errors import BlobNotFound
from storage.blobs.files import INLINE_READ, FileBlobStore


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "key",
    [
        "../secret.txt",
        "../../secret.txt",
        "../etc/passwd",
        "/etc/passwd",
        "",
        "A" * 64,  # hex, but not the lowercase form put() returns
        "0" * 63,
        "0" * 64 + "/../../secret.txt",
    ],
)
async def test_a_malformed_key_never_reaches_outside_the_store(tmp_path: Path, key: str) -> None:
    root = tmp_path / "store" / "blobs"
    blobs = FileBlobStore(root)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not a blob")
    (tmp_path / "store" / "secret.txt").write_bytes(b"not a blob either")

    with pytest.raises(BlobNotFound):
        await blobs.get(key)
    with pytest.raises(BlobNotFound):
        await blobs.delete(key)

    assert secret.read_bytes() == b"not a blob"
    assert (tmp_path / "store" / "secret.txt").read_bytes() == b"not a blob either"
    assert _files(root) == []


async def test_puts_leave_no_temporary_files(blobs: FileBlobStore) -> None:
    payloads = [b"one", b"two", b"three", b"one", b"x" * 1_000_000]
    keys = {await blobs.put(data) for data in payloads}

    files = _files(blobs.root)
    assert sorted(path.name for path in files) == sorted(keys)
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


@pytest.mark.parametrize("size", [0, INLINE_READ, INLINE_READ + 1, 3 * INLINE_READ + 7])
async def test_get_returns_every_byte_read_inline_or_in_a_thread(
    blobs: FileBlobStore, size: int
) -> None:
    # up to INLINE_READ bytes are read on the event loop, the rest in a thread
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert await blobs.get(await blobs.put(data)) == data
