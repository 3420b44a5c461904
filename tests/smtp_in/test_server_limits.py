"""Session limits on the SMTP ports (issue 3, point 2): sessions per client address, timeouts.

A server of its own with tiny limits, so the limits are reached in a test's time.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from storage.db.models import InboundMessage
from storage.registry import Storage
from tests.support.smtp_server import InProcessSmtp, running_smtp

SESSIONS_PER_IP = 2


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSmtp]:
    with running_smtp(
        tmp_path_factory.mktemp("limits"),
        "example.test",
        "bob@example.test",
        max_sessions_per_ip=SESSIONS_PER_IP,
        smtp_command_timeout_seconds=1.0,
        smtp_data_timeout_seconds=1.0,
    ) as server:
        yield server


def connect(server: InProcessSmtp, source: str = "127.0.0.1") -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30, source_address=(source, 0))


def inbound_rows(server: InProcessSmtp) -> int:
    async def count(store: Storage) -> int:
        async with store.db.session() as session:
            return int(await session.scalar(select(func.count(InboundMessage.id))) or 0)

    return server.call(count)


def test_sessions_past_the_cap_per_address_get_421_4_7_0(limited: InProcessSmtp) -> None:
    held = [connect(limited) for _ in range(SESSIONS_PER_IP)]
    try:
        for client in held:
            assert client.noop()[0] == 250
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            connect(limited)
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.7.0")
        # the cap is per client address: another one is served
        with connect(limited, source="127.0.0.2") as other:
            assert other.noop()[0] == 250
    finally:
        for client in held:
            client.quit()
    # once the sessions are closed the address is served again (the server notices the close
    # asynchronously, so poll)
    deadline = time.monotonic() + 10
    while True:
        try:
            with connect(limited) as client:
                assert client.noop()[0] == 250
            break
        except smtplib.SMTPConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_an_idle_client_is_told_421_4_4_2_and_disconnected(limited: InProcessSmtp) -> None:
    with connect(limited, source="127.0.0.3") as client:
        client.ehlo("client.remote.test")
        code, reply = client.getreply()  # sends nothing and waits: the server speaks first
        assert code == 421
        assert reply.startswith(b"4.4.2")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_a_client_stalling_in_data_is_cut_off_and_nothing_is_stored(
    limited: InProcessSmtp,
) -> None:
    before = inbound_rows(limited)
    client = connect(limited, source="127.0.0.4")
    client.ehlo("client.remote.test")
    client.mail("zed@remote.test")
    client.rcpt("bob@example.test")
    assert client.docmd("DATA")[0] == 354
    client.send(b"Subject: half\r\n\r\nhalf a mess")
    code, reply = client.getreply()
    assert code == 421
    assert reply.startswith(b"4.4.2")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    client.close()
    assert inbound_rows(limited) == before
