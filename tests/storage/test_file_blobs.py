"""Blobs as files under the data directory: content addressing, durability, safe keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from postroom.errors import BlobNotFound
from storage.blobs.files import FileBlobStore


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("data", [b"", b"Subject: hi\r\n\r\nhello\r\n", bytes(range(256)) * 4096])
async def test_put_returns_the_sha256_and_get_returns_the_bytes(
    blobs: FileBlobStore, data: bytes
) -> None:
    key = await blobs.put(data)

    assert key == hashlib.sha256(data).hexdigest()
    assert await blobs.get(key) == data
    assert await blobs.exists(key)


async def test_the_same_bytes_are_stored_once(blobs: FileBlobStore) -> None:
    """A retried write, or one attachment sent to many people, costs one file."""
    first = await blobs.put(b"same bytes")
    second = await blobs.put(b"same bytes")

    assert first == second
    assert len(_files(blobs.root)) == 1


async def test_get_of_an_unknown_key_raises_blob_not_found(blobs: FileBlobStore) -> None:
    unknown = hashlib.sha256(b"never stored").hexdigest()

    with pytest.raises(BlobNotFound):
        await blobs.get(unknown)
    assert not await blobs.exists(unknown)


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


async def test_delete_removes_the_blob(blobs: FileBlobStore) -> None:
    key = await blobs.put(b"short-lived")

    await blobs.delete(key)

    assert not await blobs.exists(key)
    with pytest.raises(BlobNotFound):
        await blobs.get(key)
    await blobs.delete(key)  # deleting again is harmless
