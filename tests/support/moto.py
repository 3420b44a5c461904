"""A real S3 API for the tests: moto's server (``moto[server]``) on a free loopback port.

Registered in the root ``conftest.py`` through ``pytest_plugins``, so one server serves the
whole session (one per xdist worker). Its state lives in memory; each test makes buckets with
names of its own through :meth:`MotoS3.new_bucket`, so tests never see each other's objects.
moto takes any credentials; :attr:`MotoS3.env` holds the made-up ones a ``postroom`` process
needs, since postroom reads them from the standard AWS variables.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.support.services import require, stop_process
from tests.support.spamd import free_tcp_port

__all__ = ["MotoS3", "moto_s3"]

START_SECONDS = 30.0

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "postroom-test",
    "AWS_SECRET_ACCESS_KEY": "postroom-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoS3:
    """The running server: its endpoint, and an S3 client of the test's own to look inside."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        self._session = boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )
        self._client = self._session.client("s3", endpoint_url=endpoint_url)

    @property
    def env(self) -> dict[str, str]:
        """Environment for a process that should use this server (endpoint and credentials)."""
        return {**CREDENTIALS, "POSTROOM_S3_ENDPOINT_URL": self.endpoint_url}

    def session(self) -> boto3.session.Session:
        """A session with the credentials moto expects (shared: making clients is slow)."""
        return self._session

    def new_bucket(self) -> str:
        """Create a bucket no other test uses; its name."""
        name = f"postroom-test-{uuid.uuid4().hex[:16]}"
        self._client.create_bucket(Bucket=name)
        return name

    def object_names(self, bucket: str) -> list[str]:
        """Every object name in ``bucket``, as S3 lists them."""
        listing = self._client.list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def close(self) -> None:
        self._client.close()


def _binary() -> str | None:
    beside_python = Path(sys.executable).with_name("moto_server")
    return str(beside_python) if beside_python.exists() else shutil.which("moto_server")


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A running moto S3 server, stopped at the end of the session."""
    binary = _binary()
    require(binary is not None, "moto_server is not installed (pip install 'moto[server]')")
    assert binary is not None
    port = free_tcp_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, endpoint, log_path)
        server = MotoS3(endpoint)
        yield server
        server.close()
    finally:
        stop_process(process)


def _wait_until_up(process: subprocess.Popen[bytes], endpoint: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            require(False, f"moto_server exited: {log_path.read_text(errors='replace')[-500:]}")
        try:
            if httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    require(False, f"moto_server did not answer within {START_SECONDS:g} s")
