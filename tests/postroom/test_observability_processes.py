"""Health, metrics and JSON logs of real ``postroom`` processes (issue 9, points 1 and 2).

``postroom up`` on PostgreSQL and Redis with ``POSTROOM_LOG_FORMAT=json``: one mail over SMTP
is counted (sessions, replies, filing) and followed through the log by its message id. Then
roles as processes of their own: smtp-in alone leaves the mail waiting in the inbound queue,
which its health port reports, until a processor starts. (smtp-out's health port is tested
with a real delivery in tests/smtp_out/test_delivery_metrics.py.)
"""

from __future__ import annotations

import asyncio
import json
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import httpx

from tests.support.platform import Platform
from tests.support.redis import REDIS_URL, delete_prefix, require_redis, unique_prefix


def _mail(subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = "carol@remote.test"
    message["To"] = "ann@example.test"
    message["Subject"] = subject
    message.set_content("hello")
    return message.as_bytes(policy=SMTP)  # CRLF, as it travels


def _send(platform: Platform, subject: str) -> str:
    """One message over SMTP; the id from ``250 ... queued as ID``."""
    with platform.smtp() as smtp:
        smtp.ehlo("client.remote.test")
        smtp.mail("carol@remote.test")
        smtp.rcpt("ann@example.test")
        code, reply = smtp.data(_mail(subject))
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[1]


def _metric(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one series, or None if it is not exported."""
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in metrics.splitlines():
        series, _, value = line.rpartition(" ")
        if series == wanted or _same_series(series, name, labels):
            return float(value)
    return None


def _same_series(series: str, name: str, labels: dict[str, str]) -> bool:
    """Label order in the exposition is not ours to choose."""
    if not series.startswith(name + "{"):
        return False
    found = dict(item.split("=", 1) for item in series[len(name) + 1 : -1].split(","))
    return found == {k: f'"{v}"' for k, v in labels.items()}


def _get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30)


def _eventually(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_up_on_postgresql_and_redis_counts_and_follows_one_mail(
    tmp_path: Path, postgresql_url: str
) -> None:
    require_redis()
    prefix = unique_prefix()
    platform = Platform(
        tmp_path,
        postgresql_url,
        extra_env={
            "POSTROOM_REDIS_URL": REDIS_URL,
            "POSTROOM_REDIS_PREFIX": prefix,
            "POSTROOM_LOG_FORMAT": "json",
        },
    )
    try:
        platform.setup("example.test", "ann@example.test")
        platform.start()
        health = platform.health_ports["up"]
        inbound_id = _send(platform, "followed")
        platform.wait_for(platform.token("ann@example.test"), "inbox", "followed")
        ready = {
            "health port": _get(health, "/readyz"),
            "gateway": _get(platform.http_port, "/readyz"),
            "realtime": _get(platform.realtime_port, "/readyz"),
        }
        metrics = _get(health, "/metrics").text
    finally:
        platform.stop()
        asyncio.run(delete_prefix(prefix))

    for where, answer in ready.items():
        assert answer.status_code == 200, (where, answer.text)
        assert answer.json()["checks"]["redis"] == {"state": "ok"}, where
    assert set(ready["health port"].json()["checks"]) == {"database", "redis", "blobs"}

    port = str(platform.smtp_port)
    assert _metric(metrics, "postroom_smtp_sessions_total", port=port) == 1
    assert _metric(metrics, "postroom_smtp_replies_total", code="354", port=port) == 1
    # EHLO, MAIL, RCPT and the end of DATA (the greeting is 220)
    assert _metric(metrics, "postroom_smtp_replies_total", code="250", port=port) == 4
    assert _metric(metrics, "postroom_inbound_filed_total", mailbox="inbox") == 1
    assert _metric(metrics, "postroom_queue_depth", queue="inbound") == 0
    assert _metric(metrics, "postroom_queue_depth", queue="outbound_due") == 0

    lines = [json.loads(line) for line in platform.log().splitlines() if line.strip()]
    assert {line["role"] for line in lines} == {"all"}
    [accepted] = [line for line in lines if line["message"].startswith("accepted ")]
    [filed] = [line for line in lines if " filed in inbox " in line["message"]]
    assert accepted["logger"] == "smtp_in.mx"
    assert filed["logger"] == "smtp_in.processor"
    assert accepted["message_id"] == filed["message_id"] == inbound_id


def test_roles_in_processes_of_their_own_answer_on_their_health_ports(tmp_path: Path) -> None:
    platform = Platform(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'postroom.db'}",
        extra_env={"POSTROOM_LOG_FORMAT": "json"},
    )
    try:
        platform.setup("example.test", "ann@example.test")
        platform.start_role("smtp-in")
        smtp_in = platform.health_ports["smtp-in"]
        inbound_id = _send(platform, "waiting")
        waiting = _get(smtp_in, "/metrics").text

        platform.start_role("processor")
        processor = platform.health_ports["processor"]
        _eventually(
            lambda: (
                _metric(_get(processor, "/metrics").text, "postroom_queue_depth", queue="inbound")
                == 0
            )
        )
        processed = _get(processor, "/metrics").text
    finally:
        platform.stop()

    assert _metric(waiting, "postroom_queue_depth", queue="inbound") == 1
    age = _metric(waiting, "postroom_queue_oldest_age_seconds", queue="inbound")
    assert age is not None and age >= 0
    assert _metric(waiting, "postroom_smtp_sessions_total", port=str(platform.smtp_port)) == 1

    assert _metric(waiting, "postroom_queue_depth", queue="outbound_due") is None, (
        "only the roles that fill or empty a queue report it"
    )
    assert _metric(processed, "postroom_inbound_filed_total", mailbox="inbox") == 1
    [accepted] = [
        json.loads(line)
        for line in (tmp_path / "smtp-in.log").read_text().splitlines()
        if '"accepted ' in line
    ]
    [filed] = [
        json.loads(line)
        for line in (tmp_path / "processor.log").read_text().splitlines()
        if " filed in inbox " in line
    ]
    assert (accepted["role"], filed["role"]) == ("smtp-in", "processor")
    assert accepted["message_id"] == filed["message_id"] == inbound_id
