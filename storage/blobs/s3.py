"""Blobs as objects in an S3 bucket (AWS S3, MinIO or any S3 API), for production.

``POSTROOM_BLOB_URL=s3://bucket`` (or ``s3://bucket/prefix/``) names the bucket; for MinIO or
another S3 API, ``POSTROOM_S3_ENDPOINT_URL`` names the endpoint. Credentials and region come
from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, ``AWS_REGION``, an instance or pod role), never from postroom's own settings,
so secrets stay where every AWS tool already looks for them. The bucket must exist: postroom
does not create it, so that a mistyped name fails loudly instead of filling a new bucket.

boto3 blocks, so every call runs in a small thread pool of this store's own, sized like its
connection pool: a slow S3 delays only blob calls, never the event loop or other threads'
work. ``put`` returns after S3 has answered the PUT, which S3 sends only once the object is
stored durably; the SHA-256 is sent along (``x-amz-checksum-sha256``) so S3 itself refuses
bytes that changed on the way.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from postroom.errors import BlobNotFound, ConfigurationError, StorageError
from storage.blobs import blob_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3BlobStore"]

T = TypeVar("T")

_KEY = re.compile(r"^[0-9a-f]{64}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CONNECTIONS = 10
"""Threads and pooled HTTP connections per store: S3 calls in flight at once."""

_MISSING = {"NoSuchKey", "404", "NotFound"}
_ACCESS = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "403",
}


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        session: boto3.session.Session | None = None,
    ) -> None:
        """``session`` carries credentials and region; by default boto3's standard chain."""
        if not _BUCKET.match(bucket):
            raise ConfigurationError(
                f"{bucket!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, "
                "dots and hyphens); fix POSTROOM_BLOB_URL"
            )
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self._session = session
        self._client: S3Client | None = None
        self._client_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(CONNECTIONS, thread_name_prefix="postroom-s3")
        self._closed = False

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None) -> S3BlobStore:
        location = url.removeprefix("s3://")
        bucket, _, prefix = location.partition("/")
        if not bucket:
            raise ConfigurationError(
                f"blob URL {url!r} names no bucket; set POSTROOM_BLOB_URL=s3://bucket"
            )
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket, prefix=prefix, endpoint_url=endpoint_url or None)

    @property
    def _where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (
            f" at {self.endpoint_url}" if self.endpoint_url else ""
        )

    def _object(self, key: str) -> str:
        if not _KEY.match(key):
            raise BlobNotFound(f"{key!r} is not a blob key")
        return self.prefix + key

    # -- the protocol -----------------------------------------------------------------------

    async def put(self, data: bytes) -> str:
        key = blob_key(data)
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        await self._call(
            f"store blob {key}",
            lambda s3: s3.put_object(
                Bucket=self.bucket,
                Key=self._object(key),
                Body=data,
                ChecksumSHA256=checksum,
                ContentType="application/octet-stream",
            ),
        )
        return key

    async def get(self, key: str) -> bytes:
        name = self._object(key)

        def read(s3: S3Client) -> bytes:
            body = s3.get_object(Bucket=self.bucket, Key=name)["Body"]
            with body:
                return body.read()

        try:
            return await self._call(f"read blob {key}", read)
        except _Missing:
            raise BlobNotFound(f"blob {key} is missing from {self._where}") from None

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is stored (a HEAD request; S3 gives no reason with a 404 to HEAD,
        so a missing bucket also reads as False here, and fails on ``put`` and ``get``).
        """
        name = self._object(key)
        try:
            await self._call(
                f"look up blob {key}", lambda s3: s3.head_object(Bucket=self.bucket, Key=name)
            )
        except _Missing:
            return False
        return True

    async def delete(self, key: str) -> None:
        name = self._object(key)
        await self._call(
            f"delete blob {key}", lambda s3: s3.delete_object(Bucket=self.bucket, Key=name)
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close_client() -> None:
            with self._client_lock:
                if self._client is not None:
                    self._client.close()
                    self._client = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close_client)
        self._executor.shutdown(wait=False)

    # -- running boto3 off the event loop ---------------------------------------------------

    def _s3(self) -> S3Client:
        """The client, made on first use in a pool thread (loading its model reads files)."""
        with self._client_lock:
            if self._client is None:
                session = self._session or boto3.session.Session()
                self._client = session.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    config=Config(
                        max_pool_connections=CONNECTIONS,
                        connect_timeout=5,
                        read_timeout=60,
                        retries={"max_attempts": 3, "mode": "standard"},
                    ),
                )
            return self._client

    async def _call(self, action: str, call: Callable[[S3Client], T]) -> T:
        def run() -> T:
            return call(self._s3())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, run)
        except ClientError as exc:
            raise self._client_error(action, exc) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StorageError(
                f"cannot {action} in {self._where}: no usable AWS credentials ({exc}); set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or give the "
                "machine a role"
            ) from exc
        except EndpointConnectionError as exc:
            raise StorageError(
                f"cannot {action}: S3 endpoint unreachable ({exc}); check "
                "POSTROOM_S3_ENDPOINT_URL and that the S3 service is running"
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot {action} in {self._where}: {exc}") from exc

    def _client_error(self, action: str, exc: ClientError) -> StorageError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        detail = error.get("Message") or code
        if code in _MISSING:
            return _Missing(action)
        if code == "NoSuchBucket":
            return StorageError(
                f"cannot {action}: bucket {self.bucket!r} does not exist"
                + (f" at {self.endpoint_url}" if self.endpoint_url else "")
                + "; create it (postroom does not) or fix POSTROOM_BLOB_URL"
            )
        if code in _ACCESS:
            return StorageError(
                f"cannot {action} in {self._where}: access denied ({detail}); check the AWS "
                "credentials and that they may read and write this bucket"
            )
        return StorageError(f"cannot {action} in {self._where}: S3 said {code}: {detail}")


class _Missing(StorageError):
    """S3 answered 404 for an object; turned into :class:`BlobNotFound` or False above."""
