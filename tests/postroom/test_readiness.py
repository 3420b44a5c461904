"""/readyz names each backend and its state; /healthz only says the process answers (issue 9, 1).

The health server runs in this process on a real port, over a real storage: PostgreSQL, Redis
and moto's S3 when they are up, and URLs pointing at closed ports or a bucket that does not
exist when they are not. Nothing shared is stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from postroom.errors import ConfigurationError
from postroom.health_server import HealthServer
from postroom.settings import Settings
from storage.registry import open_storage
from tests.support.moto import MotoS3
from tests.support.platform import free_port
from tests.support.redis import REDIS_URL, require_redis, unique_prefix
from tests.support.stores import migrated_storage


@asynccontextmanager
async def health_server(settings: Settings, *, migrated: bool) -> AsyncIterator[httpx.AsyncClient]:
    opened = migrated_storage(settings) if migrated else _unmigrated(settings)
    async with opened as store:
        server = HealthServer(store, ["smtp-in", "processor", "smtp-out"])
        [address] = await server.start()
        try:
            async with httpx.AsyncClient(base_url=address.split(" ")[0], timeout=30) as http:
                yield http
        finally:
            await server.stop(1.0)


@asynccontextmanager
async def _unmigrated(settings: Settings) -> AsyncIterator[Any]:
    store = open_storage(settings)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def s3_env(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    for name, value in moto_s3.env.items():
        monkeypatch.setenv(name, value)
    return moto_s3


async def test_ready_with_postgresql_redis_and_s3_up(
    tmp_path: Path, s3_env: MotoS3, postgresql_url: str
) -> None:
    require_redis()
    settings = Settings(
        data_dir=tmp_path,
        database_url=postgresql_url,
        redis_url=REDIS_URL,
        redis_prefix=unique_prefix(),
        blob_url=f"s3://{s3_env.new_bucket()}",
        s3_endpoint_url=s3_env.endpoint_url,
        health_port=free_port(),
    )
    async with health_server(settings, migrated=True) as http:
        ready = await http.get("/readyz")
        alive = await http.get("/healthz")
        metrics = await http.get("/metrics")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": {"state": "ok"}, "redis": {"state": "ok"}, "blobs": {"state": "ok"}},
    }
    assert alive.status_code == 200
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'postroom_queue_depth{queue="inbound"} 0.0' in metrics.text
    assert 'postroom_queue_depth{queue="outbound_due"} 0.0' in metrics.text


async def test_not_ready_names_every_backend_that_does_not_answer(
    tmp_path: Path, s3_env: MotoS3
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        blob_url="s3://postroom-no-such-bucket",
        s3_endpoint_url=s3_env.endpoint_url,
        health_port=free_port(),
    )
    async with health_server(settings, migrated=False) as http:
        ready = await http.get("/readyz")
        alive = await http.get("/healthz")
        metrics = await http.get("/metrics")  # the queue gauges cannot be read: still answers
        missing = await http.get("/nothing")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready"
    checks = body["checks"]
    assert set(checks) == {"database", "redis", "blobs"}
    assert all(check["state"] == "failed" for check in checks.values()), checks
    assert "Connect" in checks["database"]["error"] or "refused" in checks["database"]["error"]
    assert "ConnectionError" in checks["redis"]["error"]
    assert "bucket 'postroom-no-such-bucket' does not exist" in checks["blobs"]["error"]
    assert alive.status_code == 200, "liveness does not depend on the backends"
    assert metrics.status_code == 200
    assert missing.status_code == 404


async def test_only_the_failing_backend_is_named(tmp_path: Path) -> None:
    """SQLite and blob files are fine; only the Redis URL points at a closed port."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'postroom.db'}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        health_port=free_port(),
    )
    async with health_server(settings, migrated=True) as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"] == {"state": "ok"}
    assert checks["blobs"] == {"state": "ok"}
    assert checks["redis"]["state"] == "failed"


async def test_a_taken_health_port_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'postroom.db'}",
        health_port=port,
    )
    async with health_server(settings, migrated=True):
        async with _unmigrated(settings) as store:
            second = HealthServer(store, ["smtp-out"])
            with pytest.raises(ConfigurationError, match="POSTROOM_HEALTH_PORT"):
                await second.start()
            await second.stop(1.0)
