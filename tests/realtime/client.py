"""What a test's WebSocket client does: read frames, expect ``ready``, expect a close."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

__all__ = ["closed_with", "frames", "ready"]


async def frames(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        while len(received) < count:
            received.append(json.loads(await ws.recv()))
    return received


async def ready(ws: ClientConnection) -> int:
    (ready,) = await frames(ws, 1)
    assert ready["type"] == "ready", ready
    return int(ready["seq"])


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(60):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason
