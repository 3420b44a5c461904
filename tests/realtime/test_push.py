"""Against a running ``postroom up``: new mail delivered over SMTP reaches a connected WebSocket
client, a reconnecting client gets exactly what it missed, long polling sees the same events,
and strangers are turned away with 4401.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.platform import Platform

pytestmark = pytest.mark.e2e


def _url(platform: Platform, query: str = "") -> str:
    return f"ws://127.0.0.1:{platform.realtime_port}/ws{query}"


async def _next_event(ws: ClientConnection, kind: str) -> dict[str, object]:
    while True:
        event: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if event["type"] == kind:
            return event


async def _send_over_smtp(platform: Platform, subject: str) -> None:
    raw = f"From: zed@remote.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nhi\r\n"

    def send() -> None:
        with platform.smtp() as client:
            client.sendmail("zed@remote.test", ["bob@example.test"], raw.encode())

    await asyncio.to_thread(send)


@pytest.mark.parametrize("how", ["query", "hello"])
async def test_mail_new_is_pushed_after_smtp_delivery(platform: Platform, how: str) -> None:
    token = await asyncio.to_thread(platform.token, "bob@example.test")
    subject = f"push {uuid.uuid4().hex[:6]}"
    url = _url(platform, f"?token={token}" if how == "query" else "")
    async with connect(url) as ws:
        if how == "hello":
            await ws.send(json.dumps({"type": "hello", "token": token}))
        ready = await _next_event(ws, "ready")
        await _send_over_smtp(platform, subject)
        event = await _next_event(ws, "mail.new")

    assert isinstance(ready["seq"], int)
    assert isinstance(event["seq"], int) and event["seq"] > ready["seq"]
    message = event["message"]
    assert isinstance(message, dict)
    assert message["subject"] == subject
    assert message["mailbox"] == "inbox"
    assert message["from"] == {"name": "", "address": "zed@remote.test"}
    listed = await asyncio.to_thread(platform.wait_for, token, "inbox", subject)
    assert message["id"] == listed[0]["id"]


async def test_another_users_mail_is_not_pushed(platform: Platform) -> None:
    ann = await asyncio.to_thread(platform.token, "ann@example.test")
    async with connect(_url(platform, f"?token={ann}")) as ws:
        await _next_event(ws, "ready")
        await _send_over_smtp(platform, f"for bob only {uuid.uuid4().hex[:6]}")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 2)


@pytest.mark.parametrize("query", ["?token=not-a-token", ""])
async def test_unauthenticated_clients_are_closed_with_4401(platform: Platform, query: str) -> None:
    async with connect(_url(platform, query)) as ws:
        if not query:
            await ws.send(json.dumps({"type": "hello", "token": "wrong"}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_a_reconnecting_client_receives_exactly_the_mail_it_missed(
    platform: Platform,
) -> None:
    token = await asyncio.to_thread(platform.token, "bob@example.test")
    async with connect(_url(platform, f"?token={token}")) as ws:
        since = (await _next_event(ws, "ready"))["seq"]
    subjects = [f"missed {n} {uuid.uuid4().hex[:6]}" for n in range(10)]
    for subject in subjects:  # one after another: each is filed before the next is sent
        await _send_over_smtp(platform, subject)
        await asyncio.to_thread(platform.wait_for, token, "inbox", subject)

    async with connect(_url(platform, f"?token={token}&since={since}")) as ws:
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 60))]
        while frames[-1]["type"] != "ready":
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))

    replayed, ready = frames[:-1], frames[-1]
    new_mail = [f["message"]["subject"] for f in replayed if f["type"] == "mail.new"]
    assert new_mail == subjects, "exactly the ten missed messages, in order"
    assert isinstance(since, int)
    assert [f["seq"] for f in replayed] == list(range(since + 1, ready["seq"] + 1)), (
        "every change after since, once each, in order (with the mailbox counts between)"
    )


async def test_long_polling_answers_with_new_mail(platform: Platform) -> None:
    token = await asyncio.to_thread(platform.token, "bob@example.test")
    with platform.api(token) as api:
        latest = api.get("/changes").json()["latest"]
        subject = f"long poll {uuid.uuid4().hex[:6]}"
        waiting = asyncio.create_task(
            asyncio.to_thread(api.get, "/events", params={"since": latest, "timeout": 20})
        )
        await _send_over_smtp(platform, subject)
        response = await waiting

    assert response.status_code == 200, response.text
    body = response.json()
    new_mail = [e for e in body["events"] if e["type"] == "mail.new"]
    assert [e["message"]["subject"] for e in new_mail] == [subject]
    assert body["events"][0]["seq"] == latest + 1
    assert body["latest"] == body["events"][-1]["seq"]


def test_long_polling_answers_empty_at_the_timeout(platform: Platform) -> None:
    token = platform.token("ann@example.test")
    with platform.api(token) as api:
        latest = api.get("/changes").json()["latest"]
        response = api.get("/events", params={"since": latest, "timeout": 0.5})

    assert response.status_code == 200, response.text
    assert response.json() == {"events": [], "latest": latest}


@pytest.mark.parametrize(
    ("params", "status", "code", "field"),
    [
        ({"since": 10**9, "timeout": 0}, 410, "resync", None),
        ({"since": 0, "timeout": 61}, 422, "invalid_input", "timeout"),
        ({"since": -1}, 422, "invalid_input", "since"),
    ],
)
def test_long_polling_refuses_what_it_cannot_serve(
    platform: Platform, params: dict[str, int], status: int, code: str, field: str | None
) -> None:
    token = platform.token("ann@example.test")
    with platform.api(token) as api:
        response = api.get("/events", params=params)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error.get("field") == field
