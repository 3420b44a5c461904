"""Outgoing mail passes the content check before delivery (issue 4, point 11), with real spamd.

Sends are made as the API makes them and delivered by a real worker to real receivers; the
check is the session's spamd (``tests/support/spamd.py``), or a port where nothing listens.
"""

from __future__ import annotations

from datetime import timedelta

from storage.db.types import utcnow
from tests.smtp_out.conftest import MX1, Mail, Peers
from tests.support.spamd import free_tcp_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
SPAM_TEXT = f"This is the GTUBE test message.\n\n{GTUBE}\n"
UNAVAILABLE = "451 4.7.1 content check unavailable"


def use_check(mail: Mail, url: str) -> None:
    """Point the workers started from now on at this content check."""
    mail.store.settings.content_check_url = url


def spamd_down() -> str:
    return f"spamd://127.0.0.1:{free_tcp_port()}"


async def test_spam_is_held_with_its_score_and_not_sent(
    mail: Mail, peers: Peers, spamd_url: str
) -> None:
    first = await peers.receiver(MX1)
    use_check(mail, spamd_url)
    sent = await mail.send("dave@remote.test", "erin@remote.test", text=SPAM_TEXT)

    await mail.run_worker()

    assert first.received == []
    delivery = await mail.delivery(sent.remote[0].id)
    assert delivery.status == "held"
    assert delivery.held_reason is not None
    assert delivery.held_reason.startswith("spam (score 10")  # GTUBE alone scores 1000
    assert "threshold 5.0" in delivery.held_reason
    assert "GTUBE" in delivery.held_reason
    assert delivery.attempts == 0  # nothing was sent
    for address in ("dave@remote.test", "erin@remote.test"):
        recipient = await mail.recipient(address)
        assert (recipient.status, recipient.remote_reply) == ("held", delivery.held_reason)
    assert await mail.queued_jobs() == []  # finished: no retry will come


async def test_a_held_delivery_is_never_tried_again(
    mail: Mail, peers: Peers, spamd_url: str
) -> None:
    first = await peers.receiver(MX1)
    use_check(mail, spamd_url)
    sent = await mail.send("dave@remote.test", text=SPAM_TEXT)
    await mail.run_worker()
    delivery_id = sent.remote[0].id

    await mail.set_delivery(delivery_id, next_attempt_at=utcnow() - timedelta(minutes=5))
    await mail.store.queue.put("outgoing", {"delivery_id": delivery_id})
    await mail.run_worker(lambda: _no_jobs_left(mail))

    assert first.received == []
    assert (await mail.delivery(delivery_id)).status == "held"


async def test_a_clean_message_is_delivered(mail: Mail, peers: Peers, spamd_url: str) -> None:
    first = await peers.receiver(MX1)
    use_check(mail, spamd_url)
    sent = await mail.send("dave@remote.test", subject="Lunch?", text="Noon at the usual place?")

    await mail.run_worker()

    assert [m.rcpt_tos for m in first.received] == [["dave@remote.test"]]
    delivery = await mail.delivery(sent.remote[0].id)
    assert (delivery.status, delivery.held_reason) == ("delivered", None)


async def test_an_unavailable_check_defers_and_sends_nothing(mail: Mail, peers: Peers) -> None:
    first = await peers.receiver(MX1)
    use_check(mail, spamd_down())
    sent = await mail.send("dave@remote.test")
    before = utcnow()

    await mail.run_worker()

    assert first.received == []
    recipient = await mail.recipient("dave@remote.test")
    assert (recipient.status, recipient.remote_reply) == ("deferred", UNAVAILABLE)
    delivery = await mail.delivery(sent.remote[0].id)
    assert (delivery.status, delivery.last_error, delivery.held_reason) == (
        "deferred",
        UNAVAILABLE,
        None,
    )
    assert delivery.next_attempt_at > before + timedelta(seconds=30)  # retried later


async def test_a_message_deferred_for_the_check_is_checked_on_the_retry(
    mail: Mail, peers: Peers, spamd_url: str
) -> None:
    first = await peers.receiver(MX1)
    use_check(mail, spamd_down())
    sent = await mail.send("dave@remote.test", text=SPAM_TEXT)
    await mail.run_worker()
    delivery_id = sent.remote[0].id
    assert (await mail.delivery(delivery_id)).status == "deferred"

    use_check(mail, spamd_url)
    await mail.set_delivery(delivery_id, next_attempt_at=utcnow() - timedelta(minutes=5))

    async def held() -> bool:
        return (await mail.delivery(delivery_id)).status == "held"

    await mail.run_worker(held)

    assert first.received == []
    assert (await mail.recipient("dave@remote.test")).status == "held"


async def test_a_checked_message_is_not_checked_again_on_retries(
    mail: Mail, peers: Peers, spamd_url: str
) -> None:
    first = await peers.receiver(MX1, refuse={"dave@remote.test": "451 4.7.1 greylisted"})
    use_check(mail, spamd_url)
    sent = await mail.send("dave@remote.test")
    await mail.run_worker()
    delivery_id = sent.remote[0].id
    assert (await mail.delivery(delivery_id)).last_error == "451 4.7.1 greylisted"

    # Were the retry checked again, the checker being down would defer it once more.
    first.refuse.clear()
    use_check(mail, spamd_down())
    await mail.set_delivery(delivery_id, next_attempt_at=utcnow() - timedelta(minutes=5))

    async def delivered() -> bool:
        return (await mail.delivery(delivery_id)).status == "delivered"

    await mail.run_worker(delivered)

    assert [m.rcpt_tos for m in first.received] == [["dave@remote.test"]]


async def _no_jobs_left(mail: Mail) -> bool:
    return await mail.queued_jobs() == []
