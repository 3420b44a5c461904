"""The gateway's /readyz and /metrics, and latency by route template (issue 9, point 1)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.gateway_api import api_for
from tests.support.platform import free_port


def _count(metrics: str, method: str, route: str, status: int) -> float:
    prefix = (
        "postroom_http_request_duration_seconds_count"
        f'{{method="{method}",route="{route}",status="{status}"}} '
    )
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return float(line.removeprefix(prefix))
    return 0.0


async def test_ready_and_latency_by_route_template(database_url: str, tmp_path: Path) -> None:
    async with api_for(database_url, tmp_path) as api:
        ann = await api.user("ann@example.test")
        root = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app), base_url="http://postroom.test"
        )
        async with root:
            before = (await root.get("/metrics")).text
            ready = await root.get("/readyz")
            for message_id in ("0" * 32, "1" * 32):
                assert (await ann.get(f"/messages/{message_id}")).status_code == 404
            assert (await root.get("/no/such/page")).status_code in (200, 404)
            after = await root.get("/metrics")
            schema = (await root.get("/openapi.json")).json()

    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "checks": {"database": {"state": "ok"}, "blobs": {"state": "ok"}},
    }
    assert after.status_code == 200
    assert after.headers["content-type"].startswith("text/plain")
    template = "/api/v1/messages/{message_id}"
    assert _count(after.text, "GET", template, 404) - _count(before, "GET", template, 404) == 2
    assert "0" * 32 not in after.text, "the raw path is never a label"
    assert _count(after.text, "GET", "/readyz", 200) >= 1
    assert not {"/readyz", "/metrics", "/healthz"} & set(schema["paths"])


async def test_not_ready_when_redis_does_not_answer(database_url: str, tmp_path: Path) -> None:
    async with api_for(
        database_url, tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    ) as api:
        root = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app), base_url="http://postroom.test"
        )
        async with root:
            ready = await root.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["database"] == {"state": "ok"}
    assert checks["redis"]["state"] == "failed"
    assert "127.0.0.1" in checks["redis"]["error"]
