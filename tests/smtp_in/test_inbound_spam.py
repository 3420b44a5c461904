"""Arriving mail goes through the content check (issue 3, point 10), with the real spamd.

The score is recorded twice, where a user and a client can see it: in the message metadata
(``headers["spam"]`` of its stored content) and as SpamAssassin's own ``X-Spam-Status`` /
``X-Spam-Flag`` fields below our Received: line in the raw message the API serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select

from postroom.checks.spamd import SpamdCheck
from postroom.settings import Settings
from smtp_in.authentication import make_resolver
from smtp_in.processor import Inspection, process_inbound
from storage.db.models import InboundMessage, Mailbox, Message, MessageContent
from storage.registry import Storage
from storage.repositories import inbound
from tests.smtp_in.test_processor import arrived, opened, prepared_settings
from tests.support.dnsmasq import Dnsmasq, DnsmasqFailed, free_port
from tests.support.services import require

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[Dnsmasq]:
    """No records: every sender domain has no SPF, DKIM or DMARC (answers are NXDOMAIN)."""
    try:
        server = Dnsmasq()
    except DnsmasqFailed as exc:
        require(False, str(exc))
        raise
    with server:
        server.start(["--host-record=probe.test,127.0.0.1"], "probe.test")
        yield server


@pytest.fixture(scope="module")
def settings(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, dnsmasq: Dnsmasq
) -> Settings:
    settings = prepared_settings(database_url, tmp_path_factory.mktemp("spam"))
    return settings.model_copy(update={"dns_nameservers": dnsmasq.nameserver})


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Storage]:
    async with opened(settings) as store:
        yield store


def _inspection(settings: Settings, url: str) -> Inspection:
    return Inspection(SpamdCheck.from_url(url), make_resolver(settings))


def _mail(subject: str, body: str) -> bytes:
    return (
        "From: Zed <zed@remote.test>\r\nTo: bob@example.test\r\n"
        f"Subject: {subject}\r\nDate: Mon, 02 Jun 2025 12:00:00 +0000\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\n{body}"
    ).encode()


async def _accept(store: Storage, raw: bytes) -> InboundMessage:
    return await inbound.accept(
        store,
        arrived(raw),
        mail_from="zed@remote.test",
        rcpt_to=["bob@example.test"],
        source="smtp",
        peer="127.0.0.1",
        helo="mx.remote.test",
    )


async def _copies(store: Storage, row: InboundMessage) -> list[tuple[Message, str]]:
    async with store.db.session() as session:
        rows = await session.execute(
            select(Message, Mailbox.role)
            .join(Mailbox, Mailbox.id == Message.mailbox_id)
            .where(Message.inbound_id == row.id)
        )
        return [(message, str(role)) for message, role in rows]


async def test_gtube_goes_to_junk_with_its_score_recorded(
    store: Storage, settings: Settings, spamd_url: str
) -> None:
    raw = _mail("cheap pills", f"This is the GTUBE test message.\r\n\r\n{GTUBE}\r\n")
    row = await _accept(store, raw)

    await process_inbound(store, row.id, _inspection(settings, spamd_url))

    [(copy, role)] = await _copies(store, row)
    assert role == "junk"
    stored = await store.blobs.get(copy.blob_key)
    accepted = await store.blobs.get(row.blob_key)
    received_end = accepted.index(b"\r\nFrom: ") + 2
    ours = stored[received_end : len(stored) - (len(accepted) - received_end)]
    assert stored.startswith(accepted[:received_end]), "our Received: line stays on top"
    assert stored.endswith(accepted[received_end:]), "then the message exactly as it came"
    assert ours.startswith(b"Authentication-Results: mx.postroom.test;")
    assert b"\r\nX-Spam-Status: Yes, score=10" in ours
    assert b"tests=" in ours and b"GTUBE" in ours
    assert ours.endswith(b"X-Spam-Flag: YES\r\n")
    async with store.db.session() as session:
        content = await session.get(MessageContent, copy.blob_key)
    assert content is not None
    spam = content.headers["spam"]
    assert spam["spam"] is True
    assert spam["score"] >= 1000
    assert spam["threshold"] == 5.0
    assert "GTUBE" in spam["rules"]
    assert content.headers["authentication"]["spf"] == "none"


async def test_clean_mail_goes_to_the_inbox_marked_not_spam(
    store: Storage, settings: Settings, spamd_url: str
) -> None:
    row = await _accept(store, _mail("lunch on friday", "Noon at the usual place?\r\n"))

    await process_inbound(store, row.id, _inspection(settings, spamd_url))

    [(copy, role)] = await _copies(store, row)
    assert role == "inbox"
    stored = await store.blobs.get(copy.blob_key)
    assert b"\r\nX-Spam-Status: No, score=" in stored
    assert b"X-Spam-Flag" not in stored


async def test_a_checker_that_is_down_keeps_the_mail_pending_until_it_answers(
    store: Storage, settings: Settings, spamd_url: str
) -> None:
    row = await _accept(store, _mail("while spamd was down", "Hello again.\r\n"))
    down = _inspection(settings, f"spamd://127.0.0.1:{free_port()}?timeout=2")

    await process_inbound(store, row.id, down)

    assert await _copies(store, row) == []
    async with store.db.session() as session:
        pending = await session.get(InboundMessage, row.id)
    assert pending is not None and pending.status == "pending"
    assert pending.last_error is not None
    assert pending.last_error.startswith("content check unavailable: spamd at 127.0.0.1:")
    async with store.db.session() as session:
        stale = await inbound.stale_pending(session, pending.received_at.replace(year=3000), 100)
    assert row.id in stale, "the sweeper will hand it back"

    await process_inbound(store, row.id, _inspection(settings, spamd_url))

    [(_copy, role)] = await _copies(store, row)
    assert role == "inbox"
