"""``postroom up`` keeping its blobs in S3 (moto's real server), as a production install does."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest

from tests.support.moto import MotoS3
from tests.support.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bucket(moto_s3: MotoS3) -> str:
    return moto_s3.new_bucket()


@pytest.fixture(scope="module")
def on_s3(
    moto_s3: MotoS3, bucket: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    folder = tmp_path_factory.mktemp("s3-platform")
    running = Platform(
        folder,
        f"sqlite+aiosqlite:///{folder / 'postroom.db'}",
        extra_env={**moto_s3.env, "POSTROOM_BLOB_URL": f"s3://{bucket}"},
    )
    running.setup("example.test", "bob@example.test")
    running.start()
    yield running
    running.stop()


def _mail(subject: str) -> bytes:
    return (
        f"From: zed@remote.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@remote.test>\r\n\r\nKept in a bucket.\r\n"
    ).encode()


def test_smtp_mail_is_stored_in_the_bucket_and_served_back_raw(
    on_s3: Platform, moto_s3: MotoS3, bucket: str
) -> None:
    subject = f"to s3 {uuid.uuid4().hex[:8]}"
    raw = _mail(subject)
    with on_s3.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        assert client.rcpt("bob@example.test")[0] == 250
        code, reply = client.data(raw)
    assert code == 250, reply

    token = on_s3.token("bob@example.test")
    (item,) = on_s3.wait_for(token, "inbox", subject)
    with on_s3.api(token) as api:
        response = api.get(f"/messages/{item['id']}/raw")
    assert response.status_code == 200
    served = response.content
    received, _, rest = served.partition(b"\r\nFrom: ")
    assert received.startswith(b"Received: from client.remote.test")
    assert b"From: " + rest == raw

    assert hashlib.sha256(served).hexdigest() in moto_s3.object_names(bucket)
    assert not (on_s3.data_dir / "blobs").exists()  # nothing went to the embedded file store


def test_a_missing_bucket_gets_451_and_stores_nothing(on_s3: Platform, moto_s3: MotoS3) -> None:
    """The sender keeps its copy and retries; the log says what to fix.

    A second ``postroom up`` over the same database (so the users exist) whose blob URL names
    a bucket nobody made.
    """
    running = Platform(
        on_s3.data_dir,
        on_s3.database_url,
        extra_env={**moto_s3.env, "POSTROOM_BLOB_URL": "s3://postroom-bucket-never-made"},
    )
    running.start()
    token = running.token("bob@example.test")
    before = running.messages(token, "inbox")
    try:
        with running.smtp() as client:
            client.ehlo("client.remote.test")
            client.mail("zed@remote.test")
            assert client.rcpt("bob@example.test")[0] == 250
            code, reply = client.data(_mail("no bucket"))
        assert code == 451, reply
        assert reply.startswith(b"4.3.0")
        assert running.messages(token, "inbox") == before
        assert "'postroom-bucket-never-made' does not exist" in running.log()
    finally:
        running.stop()
