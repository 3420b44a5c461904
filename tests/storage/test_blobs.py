"""One suite for every blob store: files under the data directory and S3 (moto's real server).

What a caller relies on is the same for both: SHA-256 keys, idempotent puts, bytes durable
and visible to any other store over the same storage once ``put`` returns, ``BlobNotFound``
for a key that is not there. File-only matters (fsync, paths) are in ``test_file_blobs.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from postroom.errors import BlobNotFound, ConfigurationError, StorageError
from postroom.settings import Settings
from storage.blobs import BlobStore
from storage.blobs.files import FileBlobStore
from storage.blobs.s3 import S3BlobStore
from storage.registry import open_storage
from tests.support.moto import CREDENTIALS, MotoS3
from tests.support.spamd import free_tcp_port


@dataclass
class Backend:
    store: BlobStore
    reopen: Callable[[], BlobStore]
    """Another store over the same storage, as another process would open it."""
    stored: Callable[[], list[str]]
    """The blob keys the storage itself holds (files on disk, objects in the bucket)."""


def _file_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "blobs"
    return Backend(
        store=FileBlobStore(root),
        reopen=lambda: FileBlobStore(root),
        stored=lambda: sorted(p.name for p in root.rglob("*") if p.is_file()),
    )


def _s3_backend(moto: MotoS3) -> Backend:
    bucket = moto.new_bucket()

    def open_store() -> S3BlobStore:
        return S3BlobStore(
            bucket, prefix="mail/", endpoint_url=moto.endpoint_url, session=moto.session()
        )

    def stored() -> list[str]:
        names = moto.object_names(bucket)
        assert all(name.startswith("mail/") for name in names), names
        return sorted(name.removeprefix("mail/") for name in names)

    return Backend(store=open_store(), reopen=open_store, stored=stored)


@pytest.fixture(params=["file", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "file":
        made = _file_backend(tmp_path)
    else:
        made = await asyncio.to_thread(_s3_backend, request.getfixturevalue("moto_s3"))
    yield made
    await made.store.close()
    await made.store.close()  # closing twice is harmless


async def _stored(backend: Backend) -> list[str]:
    return await asyncio.to_thread(backend.stored)


# -- the protocol, on every backend ---------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"Subject: hi\r\n\r\nhello\r\n", bytes(range(256)) * 4096])
async def test_put_returns_the_sha256_and_get_returns_the_bytes(
    backend: Backend, data: bytes
) -> None:
    key = await backend.store.put(data)

    assert key == hashlib.sha256(data).hexdigest()
    assert await backend.store.get(key) == data
    assert await backend.store.exists(key)
    assert await _stored(backend) == [key]


async def test_a_put_is_readable_through_another_store_when_it_returns(backend: Backend) -> None:
    """What ``250`` promises: once put returns, any other process can read the bytes."""
    key = await backend.store.put(b"durable before the reply")

    other = backend.reopen()
    try:
        assert await other.get(key) == b"durable before the reply"
    finally:
        await other.close()


async def test_the_same_bytes_are_stored_once(backend: Backend) -> None:
    """A retried write, or one attachment sent to many people, costs one stored blob."""
    first = await backend.store.put(b"same bytes")
    second = await backend.store.put(b"same bytes")

    assert first == second
    assert await _stored(backend) == [first]
    assert await backend.store.get(first) == b"same bytes"


async def test_concurrent_puts_all_land(backend: Backend) -> None:
    payloads = [f"message {n}\r\n".encode() * (n + 1) for n in range(40)]

    keys = await asyncio.gather(*(backend.store.put(data) for data in payloads))

    assert await _stored(backend) == sorted(set(keys))
    contents = await asyncio.gather(*(backend.store.get(key) for key in keys))
    assert contents == payloads


async def test_get_of_an_unknown_key_raises_blob_not_found(backend: Backend) -> None:
    unknown = hashlib.sha256(b"never stored").hexdigest()

    with pytest.raises(BlobNotFound):
        await backend.store.get(unknown)
    assert not await backend.store.exists(unknown)


@pytest.mark.parametrize("key", ["../secret.txt", "", "A" * 64, "0" * 63, "0" * 64 + "/x"])
async def test_a_malformed_key_is_not_found_and_touches_nothing(backend: Backend, key: str) -> None:
    kept = await backend.store.put(b"kept")

    with pytest.raises(BlobNotFound):
        await backend.store.get(key)
    with pytest.raises(BlobNotFound):
        await backend.store.delete(key)

    assert await _stored(backend) == [kept]


async def test_delete_removes_the_blob(backend: Backend) -> None:
    key = await backend.store.put(b"short-lived")
    kept = await backend.store.put(b"stays")

    await backend.store.delete(key)

    assert not await backend.store.exists(key)
    with pytest.raises(BlobNotFound):
        await backend.store.get(key)
    await backend.store.delete(key)  # deleting again is harmless
    assert await _stored(backend) == [kept]


# -- S3: settings and failures a user must be able to act on --------------------------------


async def test_the_settings_pick_s3_with_the_endpoint_and_prefix(
    moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = await asyncio.to_thread(moto_s3.new_bucket)
    settings = Settings(
        data_dir=tmp_path, blob_url=f"s3://{bucket}/tenant-a", s3_endpoint_url=moto_s3.endpoint_url
    )
    store = open_storage(settings)
    try:
        assert isinstance(store.blobs, S3BlobStore)
        key = await store.blobs.put(b"through the registry")
    finally:
        await store.close()

    assert await asyncio.to_thread(moto_s3.object_names, bucket) == [f"tenant-a/{key}"]
    assert not (tmp_path / "blobs").exists()


@pytest.mark.parametrize("url", ["s3://", "s3://Not_A_Bucket", "s3://ab"])
def test_a_bad_bucket_in_the_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="POSTROOM_BLOB_URL"):
        S3BlobStore.from_url(url)


async def test_a_missing_bucket_says_to_create_it(moto_s3: MotoS3) -> None:
    store = S3BlobStore(
        "postroom-no-such-bucket", endpoint_url=moto_s3.endpoint_url, session=moto_s3.session()
    )
    try:
        with pytest.raises(StorageError) as raised:
            await store.put(b"nowhere to go")
    finally:
        await store.close()

    message = raised.value.message
    assert "'postroom-no-such-bucket' does not exist" in message
    assert "create it" in message
    assert not isinstance(raised.value, BlobNotFound)


async def test_an_unreachable_endpoint_names_the_setting_to_check() -> None:
    port = free_tcp_port()  # nothing listens there
    store = S3BlobStore(
        "postroom-blobs", endpoint_url=f"http://127.0.0.1:{port}", session=_session()
    )
    try:
        with pytest.raises(StorageError, match="POSTROOM_S3_ENDPOINT_URL"):
            await store.put(b"x")
    finally:
        await store.close()


async def test_missing_credentials_say_which_variables_to_set(
    moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = S3BlobStore("postroom-blobs", endpoint_url=moto_s3.endpoint_url)
    try:
        with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID") as raised:
            await store.put(b"x")
    finally:
        await store.close()
    assert "no usable AWS credentials" in raised.value.message


async def test_a_hanging_s3_does_not_block_the_event_loop() -> None:
    """boto3 blocks; the store must wait for it in a thread while the loop serves others.

    The S3 endpoint here is a server on this very event loop that takes the request and never
    answers: it can only take it if ``put`` left the loop free.
    """
    request_seen = asyncio.Event()
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        request_seen.set()
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = S3BlobStore(
        "postroom-blobs", endpoint_url=f"http://127.0.0.1:{port}", session=_session()
    )
    put = asyncio.create_task(store.put(b"waiting for S3"))
    try:
        await asyncio.wait_for(request_seen.wait(), timeout=30)
        assert not put.done()  # no reply yet, so no key: put is still waiting, off the loop
    finally:
        server.close()
        release.set()
        with pytest.raises(StorageError):
            await put  # the connection dropped and nothing listens any more
        await store.close()


def _session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="postroom-test",
        aws_secret_access_key="postroom-test-secret",
        region_name="us-east-1",
    )
