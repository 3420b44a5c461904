"""One SMTP transaction against real peers: what each recipient's reply becomes."""

from __future__ import annotations

import ssl
from pathlib import Path

from smtp_out.connections import Connections, SessionOptions
from smtp_out.delivery import Envelope, Reply, deliver
from smtp_out.mx import Target
from tests.smtp_out.conftest import MX1, MX2, Peers

MESSAGE = b"From: alice@postroom.test\r\nSubject: hi\r\n\r\nHello.\r\n.leading dot\r\n"
TARGETS = [Target("mx1.remote.test", MX1), Target("mx2.remote.test", MX2)]


def options(port: int, **timeouts: float) -> Connections:
    return Connections(SessionOptions(port=port, helo="postroom.test", **timeouts))


def envelope(*recipients: str) -> Envelope:
    return Envelope("alice@postroom.test", recipients, MESSAGE)


async def test_data_refusal_bounces_the_accepted(peers: Peers) -> None:
    await peers.receiver(
        MX1, refuse={"b@remote.test": "550 5.1.1 unknown"}, data_reply="554 5.6.0 spam"
    )

    replies = await deliver(
        TARGETS, envelope("a@remote.test", "b@remote.test"), options(peers.port)
    )

    assert replies == {
        "a@remote.test": Reply(554, "5.6.0 spam"),
        "b@remote.test": Reply(550, "5.1.1 unknown"),
    }
    assert {r.status for r in replies.values()} == {"bounced"}


async def test_dot_stuffing_keeps_the_message_intact(peers: Peers) -> None:
    first = await peers.receiver(MX1)

    replies = await deliver(TARGETS, envelope("a@remote.test"), options(peers.port))

    assert replies["a@remote.test"].status == "delivered"
    assert first.received[0].content.rstrip(b"\r\n") == MESSAGE.rstrip(b"\r\n")


async def test_sender_refused_applies_to_everyone(peers: Peers) -> None:
    chaos = await peers.serve(
        MX1,
        [b"220 hi\r\n", b"250 hi\r\n", b"451 4.3.0 sender check failed, try later\r\n"],
    )

    replies = await deliver(
        TARGETS, envelope("a@remote.test", "b@remote.test"), options(peers.port)
    )

    assert set(replies.values()) == {Reply(451, "4.3.0 sender check failed, try later")}
    assert chaos.heard[1].startswith(b"MAIL FROM:<alice@postroom.test>")


async def test_connection_lost_mid_transaction_defers_the_rest(peers: Peers) -> None:
    await peers.serve(
        MX1,
        [b"220 hi\r\n", b"250 hi\r\n", b"250 sender ok\r\n", b"550 5.1.1 unknown\r\n"],
    )  # hangs up instead of answering the second RCPT

    replies = await deliver(
        TARGETS, envelope("a@remote.test", "b@remote.test"), options(peers.port)
    )

    assert replies["a@remote.test"] == Reply(550, "5.1.1 unknown")
    assert replies["b@remote.test"].code == 451
    assert replies["b@remote.test"].text.startswith("4.4.2 mx1.remote.test[127.0.0.2]: ")


async def test_a_stalled_peer_times_out_and_defers(peers: Peers) -> None:
    first = await peers.receiver(MX1, stall=5.0)

    replies = await deliver(
        TARGETS, envelope("a@remote.test"), options(peers.port, data_timeout=0.3)
    )

    assert replies["a@remote.test"].status == "deferred"
    assert first.received == []


async def test_international_addresses_need_smtputf8(peers: Peers) -> None:
    first = await peers.receiver(MX1, smtputf8=False)

    replies = await deliver(
        TARGETS, envelope("josé@remote.test", "a@remote.test"), options(peers.port)
    )

    assert replies["josé@remote.test"].code == 553
    assert replies["josé@remote.test"].text.startswith("5.6.7 ")
    assert replies["a@remote.test"].status == "delivered"
    assert [m.rcpt_tos for m in first.received] == [["a@remote.test"]]


async def test_international_addresses_with_smtputf8(peers: Peers) -> None:
    first = await peers.receiver(MX1)

    replies = await deliver(TARGETS, envelope("josé@remote.test"), options(peers.port))

    assert replies["josé@remote.test"].status == "delivered"
    assert [m.rcpt_tos for m in first.received] == [["josé@remote.test"]]


async def test_failed_starttls_falls_back_to_plaintext(
    peers: Peers, tls_certificate: tuple[Path, Path]
) -> None:
    picky = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    picky.verify_mode = ssl.CERT_REQUIRED  # we send no client certificate: TLS fails
    picky.load_cert_chain(*tls_certificate)
    first = await peers.receiver(MX1, tls=picky)

    replies = await deliver(TARGETS, envelope("a@remote.test"), options(peers.port))

    assert replies["a@remote.test"].status == "delivered"
    assert [m.tls for m in first.received] == [False]
