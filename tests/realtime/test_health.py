"""Realtime answers /healthz, /readyz and /metrics on its WebSocket port (issue 9, point 1)."""

from __future__ import annotations

import asyncio

import httpx
from websockets.asyncio.client import connect

from tests.realtime import client
from tests.realtime.conftest import Start
from tests.support.platform import free_port


def _gauge(metrics: str) -> float:
    [line] = [m for m in metrics.splitlines() if m.startswith("postroom_websocket_connections ")]
    return float(line.split()[1])


async def test_health_routes_and_the_connections_gauge(start_realtime: Start) -> None:
    running = await start_realtime()
    base = f"http://127.0.0.1:{running.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        alive = await http.get("/healthz")
        ready = await http.get("/readyz")
        before = _gauge((await http.get("/metrics")).text)
        async with connect(running.url_with_token()) as ws:
            await client.ready(ws)
            during = _gauge((await http.get("/metrics")).text)
        after = before + 1
        for _ in range(100):  # the server notices the close a moment after the client
            after = _gauge((await http.get("/metrics")).text)
            if after == before:
                break
            await asyncio.sleep(0.05)
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.headers["content-type"] == "application/json"
    assert ready.json() == {"status": "ready", "checks": {"database": {"state": "ok"}}}
    assert during == before + 1
    assert after == before


async def test_not_ready_when_the_bus_redis_does_not_answer(start_realtime: Start) -> None:
    running = await start_realtime(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}") as http:
        ready = await http.get("/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"]["state"] == "failed"
    assert ready.json()["checks"]["database"] == {"state": "ok"}
