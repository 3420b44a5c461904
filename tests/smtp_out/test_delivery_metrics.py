"""A real ``postroom run smtp-out`` counts its deliveries on its health port (issue 9, point 1).

The gateway and the delivery worker run as processes of their own; the receiving MX is an
aiosmtpd server on another loopback address, found through dnsmasq like in production.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from tests.smtp_out.conftest import MX1
from tests.support.platform import Platform


class Receiver:
    def __init__(self) -> None:
        self.accepted = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted += 1
        return "250 2.0.0 Ok"


def _series(metrics: str, prefix: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_delivery_is_counted_by_outcome(
    tmp_path: Path, dns_port: int, delivery_port: int
) -> None:
    receiver = Receiver()
    controller = Controller(receiver, hostname=MX1, port=delivery_port, ready_timeout=10)
    controller.start()
    platform = Platform(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'postroom.db'}",
        extra_env={
            "POSTROOM_DNS_NAMESERVERS": f"127.0.0.1:{dns_port}",
            "POSTROOM_DELIVERY_PORT": str(delivery_port),
            "POSTROOM_DELIVERY_TLS": "off",
        },
    )
    try:
        platform.setup("postroom.test", "alice@postroom.test")
        platform.start_role("gateway")
        platform.start_role("smtp-out")
        health = f"http://127.0.0.1:{platform.health_ports['smtp-out']}"
        alive = httpx.get(f"{health}/healthz", timeout=30)
        ready = httpx.get(f"{health}/readyz", timeout=30)
        token = platform.token("alice@postroom.test")
        with platform.api(token) as api:
            sent = api.post(
                "/send", json={"to": ["dave@remote.test"], "subject": "counted", "text": "hi"}
            )
        assert sent.status_code == 202, sent.text
        deadline = time.monotonic() + 60
        delivered = None
        while delivered != 1:
            assert time.monotonic() < deadline, "the delivery was never counted"
            time.sleep(0.2)
            metrics = httpx.get(f"{health}/metrics", timeout=30).text
            delivered = _series(metrics, 'postroom_deliveries_total{outcome="delivered"}')
        gateway = httpx.get(f"http://127.0.0.1:{platform.http_port}/metrics", timeout=30).text
    finally:
        platform.stop()
        controller.stop()

    assert alive.status_code == 200
    assert ready.status_code == 200, ready.text
    assert receiver.accepted == 1
    assert _series(metrics, 'postroom_queue_depth{queue="outbound_due"}') == 0
    assert _series(metrics, 'postroom_queue_depth{queue="deferred"}') == 0
    send_count = (
        'postroom_http_request_duration_seconds_count{method="POST",route="/api/v1/send",'
        'status="202"}'
    )
    assert _series(gateway, send_count) == 1
