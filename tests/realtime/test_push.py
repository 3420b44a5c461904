"""New mail reaches a connected WebSocket client; strangers are turned away with 4401."""

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
        event: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 15))
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
