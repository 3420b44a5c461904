"""Once every role is up, what starting made is frozen out of the garbage collector's way.

Full collections that walk every long-lived object (modules, the app, compiled statements)
paused the event loop long enough to be the p99 of the API under load (bench/api); after
``gc.freeze()`` they walk only what requests make.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import httpx
import pytest

from postroom.runner import run_roles
from postroom.settings import Settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of this test process collects as usual


async def test_objects_made_while_starting_are_frozen_once_the_roles_serve(
    gateway_settings: Settings, unfrozen: None
) -> None:
    settings = gateway_settings
    assert gc.get_freeze_count() == 0
    running = asyncio.create_task(run_roles(settings, ["gateway"]))
    try:
        deadline = time.monotonic() + 60
        while gc.get_freeze_count() == 0:
            assert not running.done(), running.exception()
            assert time.monotonic() < deadline, "postroom did not come up in 60 s"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient() as client:
            health = await client.get(f"http://127.0.0.1:{settings.http_port}/healthz")
        assert health.status_code == 200  # frozen only once the gateway serves
        assert gc.get_freeze_count() > 1000  # the app and everything imported for it
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
