"""Each role runs alone against a shared database (issue 2, point 6).

smtp-in, processor and gateway each run as their own ``postroom run ROLE`` process; they meet
only in the database and blob store, as in production.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
def split(own_database_url: str, tmp_path: Path) -> Iterator[Platform]:
    platform = Platform(tmp_path, own_database_url)
    platform.setup("example.test", "bob@example.test")
    yield platform
    platform.stop()


def test_mail_flows_through_separate_role_processes(split: Platform) -> None:
    roles = {role: split.start_role(role) for role in ("smtp-in", "gateway")}
    subject = f"split roles {uuid.uuid4().hex[:6]}"
    raw = f"From: zed@remote.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nhi\r\n"
    with split.smtp() as client:
        client.sendmail("zed@remote.test", ["bob@example.test"], raw.encode())

    token = split.token("bob@example.test")
    assert split.messages(token, "inbox") == [], "nothing files mail while no processor runs"

    roles["processor"] = split.start_role("processor")
    assert [m["subject"] for m in split.wait_for(token, "inbox", subject)] == [subject]

    for role, process in roles.items():
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0, f"{role} did not stop cleanly"


@pytest.mark.parametrize("role", ["smtp-out", "realtime"])
def test_every_other_role_starts_and_stops_alone(split: Platform, role: str) -> None:
    process = split.start_role(role)
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    assert "stopping: taking no new work" in (split.data_dir / f"{role}.log").read_text()
