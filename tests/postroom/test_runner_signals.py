"""SIGTERM sent the moment "postroom is up" is logged stops postroom gracefully.

Supervisors and the end-to-end tests send it on reading that line; the handler used to be
installed just after it, so a signal arriving in between killed the process outright.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from postroom.runner import run_roles
from postroom.settings import Settings


class _TermOnUp(logging.Handler):
    """On "postroom is up": notes who handles SIGTERM, and sends it if postroom does."""

    def __init__(self, before: object) -> None:
        super().__init__()
        self.before = before
        self.handled_when_up: bool | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if not record.getMessage().startswith("postroom is up"):
            return
        self.handled_when_up = signal.getsignal(signal.SIGTERM) is not self.before
        if self.handled_when_up:
            os.kill(os.getpid(), signal.SIGTERM)


async def test_sigterm_on_the_up_line_stops_every_role_gracefully(
    gateway_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = _TermOnUp(signal.getsignal(signal.SIGTERM))
    runner_log = logging.getLogger("postroom")
    runner_log.addHandler(watcher)
    caplog.set_level(logging.INFO, logger="postroom")
    try:
        await asyncio.wait_for(run_roles(gateway_settings, ["gateway"]), timeout=30)
    except TimeoutError:
        pytest.fail(f"still running 30 s on; SIGTERM handled when up: {watcher.handled_when_up}")
    finally:
        runner_log.removeHandler(watcher)
    assert watcher.handled_when_up is True
    messages = [r.getMessage() for r in caplog.records if r.name == "postroom"]
    assert any(m.startswith("stopping: taking no new work") for m in messages)
    assert any(m.startswith("stopped in") for m in messages)
