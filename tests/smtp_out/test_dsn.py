"""Bounces and delay notices (issue 4, point 6): a DSN lands in the local sender's Inbox.

Sends are made as the API makes them, delivered by a real worker to real SMTP peers, and the
DSN is filed by the real processor; what the sender would read is parsed back from its blob.
"""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage, Message

import pytest
from sqlalchemy import select

from smtp_in.processor import process_inbound
from smtp_out.dsn import RecipientReport, build_dsn, is_delivery_report, status_code
from storage.db.models import (
    Blob,
    Delivery,
    DeliveryRecipient,
    InboundMessage,
    Mailbox,
    OutboundMessage,
)
from storage.db.models import (
    Message as StoredMessage,
)
from storage.db.types import utcnow
from storage.queues import OUTGOING
from tests.smtp_out.conftest import MX1, Mail, Peers


async def _dsn_rows(mail: Mail) -> list[InboundMessage]:
    async with mail.store.db.session() as session:
        query = select(InboundMessage).where(InboundMessage.source == "dsn")
        return list(await session.scalars(query.order_by(InboundMessage.received_at)))


async def _inbox(mail: Mail) -> list[StoredMessage]:
    async with mail.store.db.session() as session:
        return list(
            await session.scalars(
                select(StoredMessage)
                .join(Mailbox, Mailbox.id == StoredMessage.mailbox_id)
                .where(Mailbox.user_id == mail.sender.id, Mailbox.role == "inbox")
                .order_by(StoredMessage.received_at)
            )
        )


async def _filed_notice(mail: Mail) -> tuple[StoredMessage, EmailMessage]:
    """Process the one DSN row as the processor does; the copy in the sender's Inbox."""
    [row] = await _dsn_rows(mail)
    assert (row.mail_from, row.rcpt_to, row.status) == ("", [mail.sender.address], "pending")
    await process_inbound(mail.store, row.id)
    [copy] = await _inbox(mail)
    parsed = message_from_bytes(await mail.store.blobs.get(copy.blob_key), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return copy, parsed


def _status_blocks(report: EmailMessage) -> list[Message]:
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    parts = list(report.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list)
    return [block for block in blocks if isinstance(block, Message)]


def _explanation(report: EmailMessage) -> str:
    text = next(report.iter_parts())
    assert isinstance(text, EmailMessage)
    return str(text.get_content())


async def test_a_550_files_a_dsn_in_the_senders_inbox(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"nobody@remote.test": "550 5.1.1 no such user"})
    sent = await mail.send("dave@remote.test", "nobody@remote.test", subject="Lunch?")

    await mail.run_worker()

    copy, report = await _filed_notice(mail)
    assert copy.from_address == "MAILER-DAEMON@postroom.test"
    assert copy.subject == "Undelivered Mail Returned to Sender"
    assert report["From"] == "Mail Delivery System <MAILER-DAEMON@postroom.test>"
    assert report["To"] == "alice@postroom.test"
    assert report["Auto-Submitted"] == "auto-replied"
    per_message, *per_recipient = _status_blocks(report)
    assert per_message["Reporting-MTA"] == "dns; postroom.test"
    assert per_message["Arrival-Date"]
    [nobody] = per_recipient  # dave was delivered: only the bounce is reported
    assert nobody["Final-Recipient"] == "rfc822; nobody@remote.test"
    assert nobody["Action"] == "failed"
    assert nobody["Status"] == "5.1.1"
    assert nobody["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert "<nobody@remote.test>: 550 5.1.1 no such user" in _explanation(report)
    headers = list(report.iter_parts())[2]
    assert isinstance(headers, EmailMessage)
    assert "Subject: Lunch?" in str(headers.get_content())

    # It answers the Sent copy, so it joins that thread.
    async with mail.store.db.session() as session:
        sent_copy = await session.get_one(StoredMessage, sent.outbound.sent_message_id)
    assert report["In-Reply-To"] == sent_copy.message_id_header
    assert copy.thread_id == sent_copy.thread_id


async def test_one_dsn_per_attempt_covers_every_bounced_recipient(mail: Mail, peers: Peers) -> None:
    await peers.receiver(
        MX1,
        refuse={
            "nobody@remote.test": "550 5.1.1 no such user",
            "gone@remote.test": "550 5.2.1 mailbox disabled",
        },
    )
    await mail.send("nobody@remote.test", "gone@remote.test")

    await mail.run_worker()

    _, report = await _filed_notice(mail)
    _, *blocks = _status_blocks(report)
    assert sorted((b["Final-Recipient"], b["Status"]) for b in blocks) == [
        ("rfc822; gone@remote.test", "5.2.1"),
        ("rfc822; nobody@remote.test", "5.1.1"),
    ]


async def test_a_domain_that_does_not_exist_gets_a_dsn(mail: Mail) -> None:
    await mail.send("anyone@missing.test")

    await mail.run_worker()

    _, report = await _filed_notice(mail)
    [_, block] = _status_blocks(report)
    assert block["Status"] == "5.1.2"
    assert block["Diagnostic-Code"] == "smtp; 550 5.1.2 the domain missing.test does not exist"


async def test_a_delay_notice_is_sent_once_past_the_threshold(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"dave@remote.test": "451 4.7.1 greylisted"})
    sent = await mail.send("dave@remote.test", subject="Lunch?")
    delivery_id = sent.remote[0].id

    async def attempts(count: int) -> None:
        async def done() -> bool:
            return (await mail.delivery(delivery_id)).attempts >= count

        # due for long enough that the worker's sweeper hands it out at once
        await mail.set_delivery(delivery_id, next_attempt_at=utcnow() - timedelta(minutes=5))
        await mail.run_worker(done)

    await attempts(1)  # deferred, but young: nobody is told yet
    assert await _dsn_rows(mail) == []
    assert (await mail.delivery(delivery_id)).delay_notified_at is None

    await mail.set_delivery(delivery_id, created_at=utcnow() - timedelta(hours=4, minutes=1))
    await attempts(2)
    await attempts(3)

    assert len(await _dsn_rows(mail)) == 1
    delivery = await mail.delivery(delivery_id)
    assert (delivery.status, delivery.attempts) == ("deferred", 3)
    assert delivery.delay_notified_at is not None
    copy, report = await _filed_notice(mail)
    assert copy.subject == "Delivery delayed: Lunch?"
    [_, block] = _status_blocks(report)
    assert block["Final-Recipient"] == "rfc822; dave@remote.test"
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.7.1"
    assert block["Diagnostic-Code"] == "smtp; 451 4.7.1 greylisted"
    assert block["Will-Retry-Until"]
    assert "you do not need to send it again" in _explanation(report)


async def test_the_delay_threshold_comes_from_the_settings(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"dave@remote.test": "451 4.7.1 greylisted"})
    sent = await mail.send("dave@remote.test")
    await mail.set_delivery(sent.remote[0].id, created_at=utcnow() - timedelta(minutes=10))
    mail.store.settings.delay_notice_hours = 0.1  # six minutes

    await mail.run_worker()

    [row] = await _dsn_rows(mail)
    assert row.rcpt_to == ["alice@postroom.test"]


async def test_giving_up_sends_a_dsn(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"dave@remote.test": "451 4.7.1 greylisted"})
    sent = await mail.send("dave@remote.test")
    await mail.set_delivery(sent.remote[0].id, created_at=utcnow() - timedelta(days=5, hours=1))

    await mail.run_worker()

    _, report = await _filed_notice(mail)
    assert report["Subject"] == "Undelivered Mail Returned to Sender"
    [_, block] = _status_blocks(report)
    assert block["Action"] == "failed"
    assert block["Status"] == "4.7.1"  # RFC 3463: a persistent transient failure
    assert block["Diagnostic-Code"] == "smtp; 451 4.7.1 greylisted"
    assert "gave up after 5 days: 451 4.7.1 greylisted" in _explanation(report)


DSN_BODY = build_dsn(
    hostname="elsewhere.test",
    sender="alice@postroom.test",
    original=b"From: alice@postroom.test\r\nSubject: hi\r\n\r\nhi\r\n",
    arrival=utcnow(),
    recipients=[RecipientReport("x@remote.test", "failed", "550 5.1.1 no")],
)
PLAIN_BODY = b"From: alice@postroom.test\r\nTo: nobody@remote.test\r\nSubject: hi\r\n\r\nhi\r\n"


@pytest.mark.parametrize(
    ("sender", "raw"),
    [
        ("", PLAIN_BODY),  # the null sender
        ("alice@postroom.test", DSN_BODY),  # a DSN about a DSN
        ("carol@elsewhere.test", PLAIN_BODY),  # a sender not hosted here
    ],
    ids=["null-sender", "dsn-about-a-dsn", "foreign-sender"],
)
async def test_no_dsn_when_none_may_be_sent(
    mail: Mail, peers: Peers, sender: str, raw: bytes
) -> None:
    await peers.receiver(MX1, refuse={"nobody@remote.test": "550 5.1.1 no such user"})
    delivery_id = await _outbound_as_is(mail, sender, raw, "nobody@remote.test")

    await mail.run_worker()

    assert (await mail.recipient("nobody@remote.test")).status == "bounced"
    assert (await mail.delivery(delivery_id)).status == "bounced"
    assert await _dsn_rows(mail) == []


async def _outbound_as_is(mail: Mail, sender: str, raw: bytes, recipient: str) -> str:
    """An outbound message the API could not make (any sender, any body), queued as sends are."""
    key = await mail.store.blobs.put(raw)
    async with mail.store.db.session() as session, session.begin():
        session.add(Blob(key=key, size=len(raw)))
        outbound = OutboundMessage(user_id=mail.sender.id, sender=sender, blob_key=key)
        session.add(outbound)
        await session.flush()
        delivery = Delivery(outbound_id=outbound.id, domain=recipient.rsplit("@", 1)[1])
        session.add(delivery)
        await session.flush()
        session.add(DeliveryRecipient(delivery_id=delivery.id, address=recipient))
    await mail.store.queue.put(OUTGOING, {"delivery_id": delivery.id})
    return delivery.id


# -- the message itself ----------------------------------------------------------------------


def test_nothing_remote_reaches_a_header() -> None:
    original = (
        b"From: alice@postroom.test\r\nSubject: hi\x07there\r\n"
        b"Message-ID: <a@b>\r\n Bcc: folded@evil.test\r\n\r\nbody\r\n"
    )
    raw = build_dsn(
        hostname="postroom.test",
        sender="alice@postroom.test",
        original=original,
        arrival=utcnow(),
        recipients=[
            RecipientReport(
                "dave@remote.test", "delayed", "451 4.7.1 wait\r\nBcc: evil@evil.test\x00 \xe9"
            )
        ],
    )
    report = message_from_bytes(raw, policy=policy.default)
    assert isinstance(report, EmailMessage)
    assert (
        report["Subject"] == "Delivery delayed"
    )  # the subject with a control character is dropped
    assert "evil" not in str(report["In-Reply-To"])  # at most the id itself is kept
    assert report["Bcc"] is None
    [_, block] = _status_blocks(report)
    assert block["Diagnostic-Code"] == "smtp; 451 4.7.1 wait Bcc: evil@evil.test"
    assert block["Bcc"] is None
    assert is_delivery_report(raw)
    assert not is_delivery_report(original)


@pytest.mark.parametrize(
    ("diagnostic", "action", "status"),
    [
        ("550 5.1.1 no such user", "failed", "5.1.1"),
        ("550 no such user", "failed", "5.0.0"),
        ("451 4.7.1 greylisted", "failed", "4.7.1"),
        ("451 try later", "delayed", "4.0.0"),
        ("550 4.1.1 mismatched classes", "failed", "5.0.0"),
        ("451 4.4.1 mx2.remote.test[127.0.0.3]: 554 5.3.2 no", "delayed", "4.4.1"),
        ("", "failed", "5.0.0"),
        ("", "delayed", "4.0.0"),
    ],
)
def test_status_codes(diagnostic: str, action: str, status: str) -> None:
    assert status_code(diagnostic, "failed" if action == "failed" else "delayed") == status
