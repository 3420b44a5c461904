"""The submission port (issue 3, points 5, 6 and 14): mail clients sending as our users.

The tests run against an in-process ``smtp-in`` and look at what it stored: the Sent copy, the
deliveries queued for remote domains, the inbound rows the processors file for local users
(their filing is the processors' tests' business).
"""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db.models import Delivery, DeliveryRecipient, InboundMessage, OutboundMessage
from storage.registry import Storage
from storage.repositories.suppressions import suppress
from storage.transaction import transaction
from tests.support.platform import PASSWORD
from tests.support.services import require
from tests.support.smtp_server import InProcessSmtp, running_smtp

USERS = ("ann@example.test", "bob@example.test", "cy@example.test")
IP_FAILURES = 4  # failed AUTH per client address per minute, in this module's settings
USER_FAILURES = 3  # failed AUTH per user name per minute


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSmtp]:
    with running_smtp(
        tmp_path_factory.mktemp("submission"),
        "example.test",
        *USERS,
        submission_auth_ip_rates=f"{IP_FAILURES}/minute",
        submission_auth_user_rates=f"{USER_FAILURES}/minute",
    ) as running:
        yield running


def connect(server: InProcessSmtp, source: str = "127.0.0.1") -> smtplib.SMTP:
    client = smtplib.SMTP(
        "127.0.0.1", server.submission_port, timeout=30, source_address=(source, 0)
    )
    client.ehlo("laptop.example.test")
    return client


def secured(server: InProcessSmtp, source: str = "127.0.0.1") -> smtplib.SMTP:
    client = connect(server, source)
    client.starttls(context=ssl._create_unverified_context())
    client.ehlo("laptop.example.test")
    return client


def signed_in(server: InProcessSmtp, user: str = "ann@example.test") -> smtplib.SMTP:
    client = secured(server)
    client.login(user, PASSWORD)
    return client


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    require(shutil.which("swaks") is not None, "swaks is not installed (apt-get install swaks)")
    return subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", "--helo", "laptop.example.test", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def auth_attempt(server: InProcessSmtp, source: str, user: str, password: str) -> tuple[int, bytes]:
    """One AUTH PLAIN (``login()`` would try each mechanism, failing twice)."""
    with secured(server, source) as client:
        client.user, client.password = user, password
        try:
            return client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPResponseException as refused:
            return refused.smtp_code, refused.smtp_error


# -- AUTH only over TLS ---------------------------------------------------------------------


def test_auth_is_offered_only_after_starttls_and_mail_needs_auth(server: InProcessSmtp) -> None:
    with connect(server) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, reply = client.docmd("AUTH", "PLAIN AGFubkBleGFtcGxlLnRlc3QAeA==")
        assert (code, reply[:6]) == (538, b"5.7.11")
        code, reply = client.mail("ann@example.test")
        assert (code, reply[:5]) == (530, b"5.7.0")
        client.starttls(context=ssl._create_unverified_context())
        client.ehlo("laptop.example.test")
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        assert client.mail("ann@example.test")[0] == 530, "TLS alone is not enough"


def test_wrong_password_gets_535_5_7_8(server: InProcessSmtp) -> None:
    code, reply = auth_attempt(server, "127.0.0.20", "bob@example.test", "not the password")
    assert (code, reply[:5]) == (535, b"5.7.8")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_sends_over_starttls_and_auth_to_remote_and_local_recipients(
    server: InProcessSmtp, mechanism: str
) -> None:
    subject = f"via swaks {mechanism} {uuid.uuid4().hex[:6]}"
    result = swaks(
        server.submission_port,
        "--tls",
        "--auth", mechanism,
        "--auth-user", "ann@example.test",
        "--auth-password", PASSWORD,
        "--from", "ann@example.test",
        "--to", "friend@remote.test,bob@example.test",
        "--header", f"Subject: {subject}",
        "--body", "Sent from a mail client.",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  250 2.0.0 OK: queued as" in result.stdout
    sent = server.call(lambda store: _sent(store, subject))
    assert sent.sender == "ann@example.test"
    assert sent.remote == [("remote.test", ["friend@remote.test"])]
    assert sent.local_rcpts == [["bob@example.test"]]
    assert sent.has_sent_copy
    assert b"with ESMTPSA id" in sent.raw.split(b"\r\n\r\n")[0]


def test_mail_from_must_be_the_users_own_address(server: InProcessSmtp) -> None:
    with signed_in(server) as client:
        for other in ("bob@example.test", "ceo@remote.test", ""):
            code, reply = client.mail(other)
            assert (code, reply[:5]) == (553, b"5.7.1"), other
            assert b"ann@example.test" in reply
        assert client.mail("Ann@Example.Test")[0] == 250


def test_local_recipients_must_exist_and_suppressed_addresses_are_refused(
    server: InProcessSmtp,
) -> None:
    async def add(store: Storage) -> None:
        async with transaction(store) as session:
            await suppress(session, "gone@remote.test", "550 5.1.1 no such user", days=None)

    server.call(add)
    before = server.call(_outbound_count)
    with signed_in(server) as client:
        client.mail("ann@example.test")
        code, reply = client.rcpt("nobody@example.test")
        assert (code, reply[:5]) == (550, b"5.1.1")
        code, reply = client.rcpt("gone@remote.test")
        assert (code, reply[:5]) == (550, b"5.7.1")
        assert b"suppression list" in reply
        code, reply = client.docmd("DATA")
        assert (code, reply[:5]) == (503, b"5.5.1")
    assert server.call(_outbound_count) == before


def test_any_domain_is_fine_for_an_authenticated_user(server: InProcessSmtp) -> None:
    with signed_in(server, "cy@example.test") as client:
        refused = client.sendmail(
            "cy@example.test",
            ["x@one.test", "y@two.test"],
            b"From: cy@example.test\r\nSubject: anywhere\r\n\r\nhi\r\n",
        )
    assert refused == {}
    sent = server.call(lambda store: _sent(store, "anywhere"))
    assert sorted(sent.remote) == [("one.test", ["x@one.test"]), ("two.test", ["y@two.test"])]


# -- failed AUTH is rate limited ----------------------------------------------------------------


def test_failed_auth_is_limited_per_client_address(server: InProcessSmtp) -> None:
    guesser = "127.0.0.30"
    for n in range(IP_FAILURES):  # each user name fails once: under the per-user budget
        code, _ = auth_attempt(server, guesser, f"guess{n}@example.test", "wrong password")
        assert code == 535
    code, reply = auth_attempt(server, guesser, "bob@example.test", PASSWORD)
    assert (code, reply[:5]) == (454, b"4.7.0"), "even the right password waits out the limit"
    assert auth_attempt(server, "127.0.0.31", "bob@example.test", PASSWORD)[0] == 235


def test_failed_auth_is_limited_per_user_from_any_address(server: InProcessSmtp) -> None:
    for n in range(USER_FAILURES):  # each address fails once: under the per-address budget
        code, _ = auth_attempt(server, f"127.0.0.{40 + n}", "cy@example.test", "wrong password")
        assert code == 535
    code, reply = auth_attempt(server, "127.0.0.50", "cy@example.test", PASSWORD)
    assert (code, reply[:5]) == (454, b"4.7.0")
    assert auth_attempt(server, "127.0.0.50", "ann@example.test", PASSWORD)[0] == 235


def test_plaintext_auth_on_loopback_only_when_the_setting_allows_it(tmp_path: Path) -> None:
    with running_smtp(
        tmp_path, "example.test", "ann@example.test", submission_plaintext_auth=True
    ) as dev:
        with connect(dev) as client:
            assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
            assert client.login("ann@example.test", PASSWORD)[0] == 235
            assert client.mail("ann@example.test")[0] == 250


# -- looking into storage -----------------------------------------------------------------------


class _Sent:
    def __init__(
        self,
        sender: str,
        raw: bytes,
        remote: list[tuple[str, list[str]]],
        local_rcpts: list[list[str]],
        has_sent_copy: bool,
    ) -> None:
        self.sender = sender
        self.raw = raw
        self.remote = remote
        self.local_rcpts = local_rcpts
        self.has_sent_copy = has_sent_copy


async def _sent(store: Storage, subject: str) -> _Sent:
    """The one outbound message whose raw bytes carry ``subject``."""
    async with store.db.session() as session:
        found = []
        for row in (await session.scalars(select(OutboundMessage))).all():
            raw = await store.blobs.get(row.blob_key)
            if f"Subject: {subject}\r\n".encode() in raw:
                found.append((row, raw))
        assert len(found) == 1, f"{len(found)} outbound messages with subject {subject!r}"
        row, raw = found[0]
        remote = []
        deliveries = await session.scalars(
            select(Delivery).where(Delivery.outbound_id == row.id, Delivery.local.is_(False))
        )
        for delivery in deliveries:
            addresses = await session.scalars(
                select(DeliveryRecipient.address).where(
                    DeliveryRecipient.delivery_id == delivery.id
                )
            )
            remote.append((delivery.domain, sorted(addresses)))
        local = await session.scalars(
            select(InboundMessage.rcpt_to).where(InboundMessage.blob_key == row.blob_key)
        )
        return _Sent(row.sender, raw, remote, list(local), row.sent_message_id is not None)


async def _outbound_count(store: Storage) -> int:
    async with store.db.session() as session:
        return int(await session.scalar(select(func.count(OutboundMessage.id))) or 0)
