"""Authentication results are recorded and decide the mailbox (issue 3, point 9).

The processor verifies mail from other servers against a real DNS server (dnsmasq) that
publishes remote.test's SPF, DKIM and ``p=reject`` DMARC records; results are looked for where
a user sees them: the mailbox, the raw message the API serves, and the message metadata.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select

from postroom.checks.noop import NoopCheck
from postroom.dkim import dns_record, generate_private_key, sign
from postroom.settings import Settings
from smtp_in.authentication import make_resolver
from smtp_in.processor import Inspection, process_inbound
from storage.db.models import InboundMessage, Mailbox, Message, MessageContent
from storage.registry import Storage
from storage.repositories import inbound
from tests.smtp_in.test_processor import arrived, opened, prepared_settings
from tests.support.dnsmasq import Dnsmasq, DnsmasqFailed
from tests.support.services import require

KEY = generate_private_key()


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[Dnsmasq]:
    try:
        server = Dnsmasq()
    except DnsmasqFailed as exc:
        require(False, str(exc))
        raise
    record = dns_record("remote.test", "sel", KEY)
    with server:
        server.start(
            [
                "--txt-record=remote.test,v=spf1 ip4:192.0.2.1 -all",
                "--txt-record=_dmarc.remote.test,v=DMARC1; p=reject",
                f"--txt-record={record.name},{','.join(record.strings)}",
            ],
            "remote.test",
            "TXT",
        )
        yield server


@pytest.fixture(scope="module")
def settings(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, dnsmasq: Dnsmasq
) -> Settings:
    settings = prepared_settings(database_url, tmp_path_factory.mktemp("filing"))
    return settings.model_copy(update={"dns_nameservers": dnsmasq.nameserver})


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Storage]:
    async with opened(settings) as store:
        yield store


def _mail(subject: str, extra: str = "") -> bytes:
    return (
        f"{extra}From: Boss <boss@remote.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
        "Date: Mon, 02 Jun 2025 12:00:00 +0000\r\n\r\nPlease pay the attached invoice.\r\n"
    ).encode()


async def _process(
    store: Storage, raw: bytes, source: str = "smtp"
) -> tuple[InboundMessage, str, bytes, MessageContent]:
    """Accept from 127.0.0.1 (not in remote.test's SPF), process, return what was filed."""
    row = await inbound.accept(
        store,
        arrived(raw),
        mail_from="boss@remote.test",
        rcpt_to=["bob@example.test"],
        source=source,
        peer="127.0.0.1",
        helo="mx.remote.test",
    )
    await process_inbound(store, row.id, Inspection(NoopCheck(), make_resolver(store.settings)))
    async with store.db.session() as session:
        copy, role = (
            await session.execute(
                select(Message, Mailbox.role)
                .join(Mailbox, Mailbox.id == Message.mailbox_id)
                .where(Message.inbound_id == row.id)
            )
        ).one()
        content = await session.get(MessageContent, copy.blob_key)
    assert content is not None
    return row, str(role), await store.blobs.get(copy.blob_key), content


async def test_a_forged_sender_under_p_reject_is_filed_in_junk(store: Storage) -> None:
    row, role, stored, content = await _process(store, _mail("Invoice overdue"))

    assert role == "junk"
    accepted = await store.blobs.get(row.blob_key)
    received, _, message = accepted.partition(b"\r\nFrom: ")
    assert stored.startswith(received + b"\r\nAuthentication-Results: mx.postroom.test;\r\n\t")
    assert stored.endswith(b"From: " + message)
    results = stored[len(received) + 2 : len(stored) - len(message) - 6].decode()
    assert "spf=fail" in results
    assert "dkim=none" in results
    assert "dmarc=fail header.from=remote.test policy.dmarc=reject" in results
    assert content.headers["authentication"] == {
        "spf": "fail",
        "dkim": "none",
        "dkim_domains": [],
        "dmarc": "fail",
        "dmarc_policy": "reject",
        "from_domain": "remote.test",
    }


async def test_a_validly_signed_message_reaches_the_inbox(store: Storage) -> None:
    signed = sign(
        _mail("Invoice, signed"), domain="remote.test", selector="sel", private_key_pem=KEY
    )

    _, role, stored, content = await _process(store, signed)

    assert role == "inbox"
    assert b"dkim=pass header.d=remote.test header.s=sel" in stored
    assert content.headers["authentication"]["dmarc"] == "pass"


async def test_a_results_field_claiming_our_name_is_removed_and_others_kept(
    store: Storage,
) -> None:
    forged = (
        "Authentication-Results: MX.postroom.test; dmarc=pass header.from=remote.test\r\n"
        "Authentication-Results: other.example; spf=pass\r\n"
    )
    _, role, stored, _ = await _process(store, _mail("Trust me", extra=forged))

    assert role == "junk"
    assert b"MX.postroom.test; dmarc=pass" not in stored
    assert b"Authentication-Results: other.example; spf=pass\r\nFrom: Boss" in stored
    assert stored.count(b"Authentication-Results: mx.postroom.test;") == 1


async def test_mail_our_users_sent_is_not_verified(store: Storage) -> None:
    row, role, stored, content = await _process(store, _mail("Sent through the API"), "api")

    assert role == "inbox"
    assert stored == await store.blobs.get(row.blob_key)
    assert "authentication" not in content.headers
