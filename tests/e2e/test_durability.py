"""A 250 is a promise (issue 2, point 9): SIGKILL loses nothing, SIGTERM finishes in-flight work."""

from __future__ import annotations

import smtplib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
def fresh(own_database_url: str, tmp_path: Path) -> Iterator[Platform]:
    """A platform of its own, since these tests kill it."""
    running = Platform(tmp_path, own_database_url)
    running.setup("example.test", "bob@example.test")
    running.start()
    yield running
    running.stop()


def _raw(subject: str) -> bytes:
    return (
        f"From: zed@remote.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ).encode()


def test_sigkill_right_after_250_loses_nothing_and_files_each_message_once(fresh: Platform) -> None:
    subjects = [f"promise {n} {uuid.uuid4().hex[:6]}" for n in range(20)]
    with fresh.smtp() as client:
        for subject in subjects:
            client.sendmail("zed@remote.test", ["bob@example.test"], _raw(subject))
        # the last 250 has just arrived: kill at once, before processing can finish
        fresh.kill()

    fresh.start()
    token = fresh.token("bob@example.test")
    for subject in subjects:
        assert len(fresh.wait_for(token, "inbox", subject)) == 1
    time.sleep(1)  # a duplicate filing would show up by now
    listed = [m["subject"] for m in fresh.messages(token, "inbox")]
    assert sorted(listed) == sorted(subjects)


def test_sigterm_finishes_the_message_in_flight_and_exits_0_within_10_s(fresh: Platform) -> None:
    subject = f"in flight {uuid.uuid4().hex[:6]}"
    client = fresh.smtp()
    client.ehlo("client.remote.test")
    client.mail("zed@remote.test")
    client.rcpt("bob@example.test")
    code, _ = client.docmd("DATA")
    assert code == 354
    client.send(_raw(subject)[:40])  # half a message is on the wire when SIGTERM arrives

    assert fresh.process is not None
    began = time.monotonic()
    fresh.process.send_signal(15)
    time.sleep(0.5)
    # new connections are refused while the session in flight may finish
    with (
        pytest.raises(OSError),
        socket.create_connection(("127.0.0.1", fresh.smtp_port), timeout=2),
    ):
        pass
    client.send(_raw(subject)[40:] + b".\r\n")
    code, reply = client.getreply()
    assert code == 250, reply
    # after the transaction the server says 421 and hangs up
    assert client.getreply()[0] == 421
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    exit_code = fresh.process.wait(10)
    assert exit_code == 0
    assert time.monotonic() - began < 10

    fresh.start()
    token = fresh.token("bob@example.test")
    assert len(fresh.wait_for(token, "inbox", subject)) == 1


def test_sigterm_on_an_idle_platform_exits_0_promptly(fresh: Platform) -> None:
    code, seconds = fresh.terminate()
    assert code == 0
    assert seconds < 10
    assert "stopping: taking no new work" in fresh.log()
