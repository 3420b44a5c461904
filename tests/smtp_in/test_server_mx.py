"""The MX port as other mail servers see it (issue 3, points 1, 2, 4 and 6).

One in-process ``smtp-in`` per module, on SQLite (the protocol does not depend on the database;
the durable-accept path is the one the e2e tests run on PostgreSQL too).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from postroom.settings import Settings
from storage.db.models import Blob, InboundMessage
from storage.registry import Storage
from tests.support.smtp_server import InProcessSmtp, running_smtp

MAX_SIZE = 20_000
MAX_RECIPIENTS = 3
USERS = ("ann@example.test", "bob@example.test", "cy@example.test", "dee@example.test")


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSmtp]:
    with running_smtp(
        tmp_path_factory.mktemp("mx"),
        "example.test",
        *USERS,
        max_message_size=MAX_SIZE,
        max_recipients=MAX_RECIPIENTS,
    ) as server:
        yield server


def stored(mx: InProcessSmtp) -> tuple[int, int]:
    """(inbound rows, blobs): what a refused message must not add to."""

    async def count(store: Storage) -> tuple[int, int]:
        async with store.db.session() as session:
            rows = await session.scalar(select(func.count()).select_from(InboundMessage))
            blobs = await session.scalar(select(func.count()).select_from(Blob))
        return int(rows or 0), int(blobs or 0)

    return mx.call(count)


def stored_message(mx: InProcessSmtp, row_id: str) -> tuple[InboundMessage, bytes]:
    async def load(store: Storage) -> tuple[InboundMessage, bytes]:
        async with store.db.session() as session:
            row = await session.get(InboundMessage, row_id)
        assert row is not None, f"no inbound row {row_id}"
        return row, await store.blobs.get(row.blob_key)

    return mx.call(load)


def unverified() -> ssl.SSLContext:
    """Mail servers do not verify each other's certificates (RFC 7435); neither do we here."""
    return ssl._create_unverified_context()


def message(subject: str, body: str = "Hello.\r\n") -> bytes:
    return (
        f"From: zed@remote.test\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\r\n{body}"
    ).encode()


# -- point 1: EHLO and STARTTLS ---------------------------------------------------------------


def test_ehlo_advertises_size_8bitmime_smtputf8_pipelining_enhancedstatuscodes_starttls(
    mx: InProcessSmtp,
) -> None:
    with mx.smtp() as client:
        code, _ = client.ehlo("client.remote.test")
        assert code == 250
        assert client.esmtp_features["size"] == str(MAX_SIZE)
        for keyword in ("8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes", "starttls"):
            assert client.has_extn(keyword), keyword
        assert not client.has_extn("auth"), "the MX port must not offer AUTH"
        code, reply = client.docmd("AUTH", "PLAIN AGFubgBwdw==")
        assert code == 502 and reply.startswith(b"5.5.1")


def test_default_size_limit_is_25_mib() -> None:
    assert Settings.model_fields["max_message_size"].default == 25 * 1024 * 1024


def test_starttls_uses_a_self_signed_certificate_generated_on_first_start(
    mx: InProcessSmtp,
) -> None:
    generated = mx.settings.data_dir / "tls" / "selfsigned.pem"
    assert generated.exists()
    assert generated.stat().st_mode & 0o077 == 0, "the key must be readable by the owner only"
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        code, _ = client.starttls(context=unverified())
        assert code == 220
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert common_name == "mx.postroom.test"
        client.ehlo("client.remote.test")
        assert not client.has_extn("starttls"), "STARTTLS is offered once"
        client.mail("zed@remote.test")
        client.rcpt("bob@example.test")
        code, reply = client.data(message("over tls"))
    assert code == 250, reply
    _, raw = stored_message(mx, reply.decode().rsplit(" ", 1)[1])
    assert b"with ESMTPS id" in raw.split(b"\r\nFrom: ")[0]


def test_plaintext_pipelined_after_starttls_is_thrown_away(mx: InProcessSmtp) -> None:
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        # STARTTLS and an injected command in one packet, as in CVE-2011-0411
        client.send(b"STARTTLS\r\nHELP\r\n")
        code, _ = client.getreply()
        assert code == 220
        client.sock = unverified().wrap_socket(client.sock)
        client.file = None
        code, reply = client.ehlo("client.remote.test")
        # had HELP survived, its "250 Supported commands" would be the first reply over TLS
        assert code == 250
        assert reply.startswith(b"mx.postroom.test\n"), reply
        assert client.noop() == (250, b"2.0.0 OK")


def test_a_second_starttls_is_refused(mx: InProcessSmtp) -> None:
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        client.starttls(context=unverified())
        client.ehlo("client.remote.test")
        code, reply = client.docmd("STARTTLS")
        assert (code, reply[:5]) == (503, b"5.5.1")
        assert client.noop()[0] == 250


# -- point 2: limits ----------------------------------------------------------------------------


def test_one_recipient_too_many_gets_452_4_5_3_and_the_rest_is_delivered(
    mx: InProcessSmtp,
) -> None:
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        for user in USERS[:MAX_RECIPIENTS]:
            assert client.rcpt(user)[0] == 250
        code, reply = client.rcpt(USERS[MAX_RECIPIENTS])
        assert code == 452
        assert reply.startswith(b"4.5.3")
        code, reply = client.data(message("many"))
    assert code == 250, reply
    row, _ = stored_message(mx, reply.decode().rsplit(" ", 1)[1])
    assert row.rcpt_to == list(USERS[:MAX_RECIPIENTS])


def test_declared_size_over_the_limit_gets_552_5_3_4_at_mail_from(mx: InProcessSmtp) -> None:
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        code, reply = client.mail("zed@remote.test", [f"SIZE={MAX_SIZE + 1}"])
    assert code == 552
    assert reply.startswith(b"5.3.4")


def test_oversized_data_gets_552_5_3_4_and_nothing_is_stored(mx: InProcessSmtp) -> None:
    before = stored(mx)
    body = ("x" * 76 + "\r\n") * (MAX_SIZE // 78 + 10)
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        client.rcpt("bob@example.test")
        code, reply = client.data(message("too big", body))
        assert code == 552
        assert reply.startswith(b"5.3.4")
        assert client.noop()[0] == 250, "the session goes on after the refusal"
    assert stored(mx) == before


def test_overlong_data_line_is_refused_and_nothing_is_stored(mx: InProcessSmtp) -> None:
    before = stored(mx)
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        client.rcpt("bob@example.test")
        code, reply = client.data(message("long line", "y" * 1500 + "\r\n"))
        assert code == 500
        assert reply.startswith(b"5.5.2")
        assert client.noop()[0] == 250
    assert stored(mx) == before


def test_a_998_octet_line_is_accepted(mx: InProcessSmtp) -> None:
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        client.rcpt("bob@example.test")
        code, reply = client.data(message("full line", "." + "z" * 997 + "\r\n"))
    assert code == 250, reply
    _, raw = stored_message(mx, reply.decode().rsplit(" ", 1)[1])
    assert raw.endswith(b"\r\n\r\n." + b"z" * 997 + b"\r\n")


def test_a_session_cannot_be_kept_alive_with_endless_noops(mx: InProcessSmtp) -> None:
    with mx.smtp() as client:
        client.send(b"NOOP\r\n" * 101)
        replies = [client.getreply() for _ in range(101)]
        assert {code for code, _ in replies[:100]} == {250}
        assert replies[100][0] == 421
        assert replies[100][1].startswith(b"4.7.0")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_overlong_command_is_refused(mx: InProcessSmtp) -> None:
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        code, reply = client.docmd("MAIL", "FROM:<" + "a" * 600 + "@remote.test>")
        assert code == 500
        assert reply.startswith(b"5.5.2")
        assert client.mail("zed@remote.test")[0] == 250


# -- point 3: SMTP smuggling ------------------------------------------------------------------

SMUGGLED = (
    b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    b"From: admin@example.test\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
)


@pytest.mark.parametrize(
    "ending",
    [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"],
    ids=["LF.LF", "CR.CR", "CRLF.LF", "LF.CRLF", "CR.CRLF", "CRLF.CR"],
)
def test_smuggled_end_of_data_is_refused_and_nothing_is_stored(
    mx: InProcessSmtp, ending: bytes
) -> None:
    before = stored(mx)
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        client.rcpt("bob@example.test")
        assert client.docmd("DATA")[0] == 354
        client.send(message("cover") + ending + SMUGGLED + b".\r\n")
        code, reply = client.getreply()
        assert 500 <= code < 600, (code, reply)
        # exactly one reply came for all of it: had the server ended the data early, the
        # replies to the smuggled MAIL/RCPT/DATA would come before this NOOP's
        assert client.noop() == (250, b"2.0.0 OK")
    assert stored(mx) == before


@pytest.mark.parametrize("line_end", [b"\n", b"\r"], ids=["bare LF", "bare CR"])
def test_bare_line_end_inside_a_message_is_refused(mx: InProcessSmtp, line_end: bytes) -> None:
    before = stored(mx)
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        client.rcpt("bob@example.test")
        code, reply = client.data(message("bare", "one" + line_end.decode() + "two\r\n"))
    assert code == 554
    assert reply.startswith(b"5.6.0")
    assert stored(mx) == before


# -- point 4: no open relay ------------------------------------------------------------------


def test_no_relay_for_other_domains_and_no_mail_for_unknown_users(mx: InProcessSmtp) -> None:
    before = stored(mx)
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        code, reply = client.rcpt("victim@elsewhere.test")
        assert (code, reply[:5]) == (554, b"5.7.1")
        code, reply = client.rcpt("nobody@example.test")
        assert (code, reply[:5]) == (550, b"5.1.1")
        code, reply = client.docmd("DATA")
        assert (code, reply[:5]) == (503, b"5.5.1")
    assert stored(mx) == before


# -- point 6 and the SMTP extensions through smtplib ------------------------------------------


def test_250_comes_with_the_message_already_stored_byte_for_byte(mx: InProcessSmtp) -> None:
    raw = message("durable", "..leading dot\r\nend\r\n")
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        client.rcpt("bob@example.test")
        code, reply = client.data(raw)
    assert code == 250, reply
    row, stored_raw = stored_message(mx, reply.decode().rsplit(" ", 1)[1])
    received, _, rest = stored_raw.partition(b"\r\nFrom: ")
    assert received.startswith(b"Received: from client.remote.test ([127.0.0.1])")
    assert b"with ESMTP id" in received
    assert b"From: " + rest == raw  # smtplib stuffs the leading dot; we unstuff it
    assert (row.mail_from, row.rcpt_to) == ("zed@remote.test", ["bob@example.test"])
    assert row.helo == "client.remote.test"  # kept for the SPF check of the HELO name


def test_pipelined_transaction_gets_its_replies_in_order(mx: InProcessSmtp) -> None:
    with mx.smtp() as client:
        client.ehlo("client.remote.test")
        assert client.has_extn("pipelining")
        client.send(
            b"MAIL FROM:<zed@remote.test>\r\nRCPT TO:<bob@example.test>\r\n"
            b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<ann@example.test>\r\nDATA\r\n"
        )
        replies = [client.getreply() for _ in range(5)]
        assert [code for code, _ in replies] == [250, 250, 550, 250, 354]
        client.send(message("pipelined") + b".\r\nNOOP\r\n")
        code, reply = client.getreply()
        assert code == 250, reply
        assert client.getreply() == (250, b"2.0.0 OK")
    row, _ = stored_message(mx, reply.decode().rsplit(" ", 1)[1])
    assert row.rcpt_to == ["bob@example.test", "ann@example.test"]


def test_smtputf8_addresses_are_accepted_with_the_parameter_and_refused_without(
    tmp_path: Path,
) -> None:
    with running_smtp(tmp_path, "example.test", "jörg@example.test") as server:
        raw = "From: zoë@remote.test\r\nTo: jörg@example.test\r\nSubject: grüße\r\n\r\nhallo\r\n"
        with server.smtp() as client:
            client.ehlo("client.remote.test")
            client.send("MAIL FROM:<zoë@remote.test>\r\n".encode())
            code, reply = client.getreply()
            assert (code, reply[:5]) == (553, b"5.6.7")
            refused = client.sendmail(
                "zoë@remote.test",
                ["jörg@example.test"],
                raw.encode(),
                mail_options=["SMTPUTF8"],
            )
            assert refused == {}
        stored_rows = server.call(_all_inbound)
    assert [(r.mail_from, r.rcpt_to) for r in stored_rows] == [
        ("zoë@remote.test", ["jörg@example.test"])
    ]


async def _all_inbound(store: Storage) -> list[InboundMessage]:
    async with store.db.session() as session:
        return list((await session.scalars(select(InboundMessage))).all())
