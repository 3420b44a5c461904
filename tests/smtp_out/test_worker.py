"""The delivery worker end to end: sends made as the API makes them, delivered to real peers."""

from __future__ import annotations

import ssl
from datetime import timedelta
from email import message_from_bytes, policy

from smtp_out.worker import DeliveryWorker
from storage.db.types import utcnow
from tests.smtp_out.conftest import BARE, MX1, MX2, Mail, Peers, eventually


async def test_delivers_to_the_preferred_mx(mail: Mail, peers: Peers) -> None:
    first = await peers.receiver(MX1)
    second = await peers.receiver(MX2)
    sent = await mail.send("dave@remote.test", subject="Lunch?", text="Noon at the usual place?")

    await mail.run_worker()

    assert second.received == []
    [got] = first.received
    assert got.helo == "postroom.test"
    assert got.mail_from == "alice@postroom.test"
    assert got.rcpt_tos == ["dave@remote.test"]
    # postroom.test has a DKIM key, so the stored message arrives behind its signature.
    assert got.content.startswith(b"DKIM-Signature: ")
    assert got.content.rstrip(b"\r\n").endswith(
        (await mail.store.blobs.get(sent.outbound.blob_key)).rstrip(b"\r\n")
    )
    message = message_from_bytes(got.content, policy=policy.default)
    assert message["Subject"] == "Lunch?"
    assert message.get_content().strip() == "Noon at the usual place?"

    recipient = await mail.recipient("dave@remote.test")
    assert recipient.status == "delivered"
    assert recipient.remote_reply == "250 2.0.0 Ok: queued as 42"
    delivery = await mail.delivery(sent.remote[0].id)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 1, None)
    assert await mail.queued_jobs() == []


async def test_next_mx_when_the_first_is_down(mail: Mail, peers: Peers) -> None:
    second = await peers.receiver(MX2)  # nothing listens on mx1
    await mail.send("dave@remote.test")

    await mail.run_worker()

    assert [m.rcpt_tos for m in second.received] == [["dave@remote.test"]]
    assert (await mail.recipient("dave@remote.test")).status == "delivered"


async def test_next_mx_when_the_first_greets_with_421(mail: Mail, peers: Peers) -> None:
    busy = await peers.greeter(MX1, b"421 4.3.2 too busy, try later\r\n")
    second = await peers.receiver(MX2)
    await mail.send("dave@remote.test")

    await mail.run_worker()

    assert busy.connections == 1
    assert [m.rcpt_tos for m in second.received] == [["dave@remote.test"]]
    assert (await mail.recipient("dave@remote.test")).status == "delivered"


async def test_every_mx_failing_defers(mail: Mail, peers: Peers) -> None:
    await peers.greeter(MX1, b"421 4.3.2 too busy\r\n")
    await peers.greeter(MX2, b"554 5.3.2 not accepting mail\r\n")
    sent = await mail.send("dave@remote.test")

    await mail.run_worker()

    recipient = await mail.recipient("dave@remote.test")
    assert recipient.status == "deferred"
    assert recipient.remote_reply is not None
    # every host's reason, in the order tried, so the sender sees why each one failed
    assert recipient.remote_reply.startswith("451 4.4.1 mx1.remote.test[127.0.0.2]: 421")
    assert "; mx2.remote.test[127.0.0.3]: 554" in recipient.remote_reply
    assert (await mail.delivery(sent.remote[0].id)).status == "deferred"


async def test_each_recipient_gets_its_own_answer(mail: Mail, peers: Peers) -> None:
    first = await peers.receiver(MX1, refuse={"nobody@remote.test": "550 5.1.1 no such user"})
    sent = await mail.send("dave@remote.test", "nobody@remote.test")

    await mail.run_worker()

    [got] = first.received
    assert got.rcpt_tos == ["dave@remote.test"]
    dave = await mail.recipient("dave@remote.test")
    nobody = await mail.recipient("nobody@remote.test")
    assert (dave.status, dave.remote_reply) == ("delivered", "250 2.0.0 Ok: queued as 42")
    assert (nobody.status, nobody.remote_reply) == ("bounced", "550 5.1.1 no such user")
    delivery = await mail.delivery(sent.remote[0].id)
    assert (delivery.status, delivery.attempts) == ("partial", 1)
    assert delivery.last_error == "550 5.1.1 no such user"


async def test_null_mx_bounces_at_once(mail: Mail) -> None:
    sent = await mail.send("anyone@nullmx.test")

    await mail.run_worker()

    recipient = await mail.recipient("anyone@nullmx.test")
    assert recipient.status == "bounced"
    assert recipient.remote_reply is not None
    assert recipient.remote_reply.startswith("556 5.1.10 ")
    assert "null MX" in recipient.remote_reply
    assert (await mail.delivery(sent.remote[0].id)).status == "bounced"


async def test_a_domain_that_does_not_exist_bounces(mail: Mail) -> None:
    sent = await mail.send("anyone@missing.test")

    await mail.run_worker()

    recipient = await mail.recipient("anyone@missing.test")
    assert recipient.status == "bounced"
    assert recipient.remote_reply == "550 5.1.2 the domain missing.test does not exist"
    assert (await mail.delivery(sent.remote[0].id)).status == "bounced"


async def test_without_mx_the_domain_itself_is_the_mail_host(mail: Mail, peers: Peers) -> None:
    bare = await peers.receiver(BARE)
    await mail.send("carol@nomx.test")

    await mail.run_worker()

    assert [m.rcpt_tos for m in bare.received] == [["carol@nomx.test"]]
    assert (await mail.recipient("carol@nomx.test")).status == "delivered"


async def test_a_temporary_refusal_defers_and_schedules_a_retry(mail: Mail, peers: Peers) -> None:
    first = await peers.receiver(MX1, refuse={"dave@remote.test": "451 4.7.1 greylisted"})
    sent = await mail.send("dave@remote.test")
    before = utcnow()

    await mail.run_worker()

    assert first.received == []
    recipient = await mail.recipient("dave@remote.test")
    assert (recipient.status, recipient.remote_reply) == ("deferred", "451 4.7.1 greylisted")
    delivery = await mail.delivery(sent.remote[0].id)
    assert (delivery.status, delivery.attempts) == ("deferred", 1)
    assert delivery.last_error == "451 4.7.1 greylisted"
    assert before + timedelta(seconds=30) < delivery.next_attempt_at
    assert delivery.next_attempt_at < utcnow() + timedelta(seconds=61)
    # The job was handed back to return when the delivery is due (other hints may be
    # duplicates from the sweeper; they find nothing due and are dropped).
    jobs = await mail.queued_jobs()
    assert any(job.available_at >= delivery.next_attempt_at for job in jobs)
    assert all(job.payload == {"delivery_id": delivery.id} for job in jobs)


async def test_a_dns_failure_defers(mail: Mail) -> None:
    sent = await mail.send("someone@elsewhere.example")  # our DNS server refuses this

    await mail.run_worker()

    recipient = await mail.recipient("someone@elsewhere.example")
    assert recipient.status == "deferred"
    assert recipient.remote_reply is not None
    assert recipient.remote_reply.startswith("451 4.4.3 ")
    assert (await mail.delivery(sent.remote[0].id)).status == "deferred"


async def test_a_deferred_delivery_is_retried_when_due(mail: Mail, peers: Peers) -> None:
    first = await peers.receiver(MX1, refuse={"dave@remote.test": "451 4.7.1 greylisted"})
    sent = await mail.send("dave@remote.test", "erin@remote.test")
    await mail.run_worker()
    assert (await mail.recipient("erin@remote.test")).status == "delivered"
    delivery_id = sent.remote[0].id

    first.refuse.clear()
    await mail.set_delivery(delivery_id, next_attempt_at=utcnow() - timedelta(minutes=5))

    async def delivered() -> bool:
        return (await mail.delivery(delivery_id)).status == "delivered"

    await mail.run_worker(delivered)

    assert [m.rcpt_tos for m in first.received] == [["erin@remote.test"], ["dave@remote.test"]]
    delivery = await mail.delivery(delivery_id)
    assert (delivery.attempts, delivery.last_error) == (2, None)
    assert (await mail.recipient("erin@remote.test")).status == "delivered"


async def test_gives_up_after_five_days(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"dave@remote.test": "451 4.7.1 greylisted"})
    sent = await mail.send("dave@remote.test")
    await mail.set_delivery(sent.remote[0].id, created_at=utcnow() - timedelta(days=5, hours=1))

    await mail.run_worker()

    recipient = await mail.recipient("dave@remote.test")
    assert recipient.status == "bounced"
    assert recipient.remote_reply == "gave up after 5 days: 451 4.7.1 greylisted"
    assert (await mail.delivery(sent.remote[0].id)).status == "bounced"
    assert await mail.queued_jobs() == []


async def test_starttls_is_used_when_offered(
    mail: Mail, peers: Peers, tls_context: ssl.SSLContext
) -> None:
    first = await peers.receiver(MX1, tls=tls_context)
    await mail.send("dave@remote.test")

    await mail.run_worker()

    [got] = first.received
    assert got.tls
    assert (await mail.recipient("dave@remote.test")).status == "delivered"


async def test_duplicate_hints_deliver_once(mail: Mail, peers: Peers) -> None:
    first = await peers.receiver(MX1)
    sent = await mail.send("dave@remote.test")
    for _ in range(3):
        await mail.store.queue.put("outgoing", {"delivery_id": sent.remote[0].id})

    await mail.run_worker(lambda: _no_jobs_left(mail))

    assert len(first.received) == 1
    assert (await mail.delivery(sent.remote[0].id)).attempts == 1


async def test_local_unknown_and_malformed_jobs_are_dropped(mail: Mail) -> None:
    sent = await mail.send("bob@postroom.test")
    [local] = await mail.recipients(local=True)
    await mail.store.queue.put("outgoing", {"delivery_id": local.delivery_id})
    await mail.store.queue.put("outgoing", {"delivery_id": "no-such-delivery"})
    await mail.store.queue.put("outgoing", {"not": "a delivery"})

    await mail.run_worker(lambda: _no_jobs_left(mail))

    assert sent.remote == []
    delivery = await mail.delivery(local.delivery_id)
    assert delivery.attempts == 0  # the processor's, not ours


async def test_stop_hands_back_a_delivery_in_flight(mail: Mail, peers: Peers) -> None:
    first = await peers.receiver(MX1, stall=30.0)
    sent = await mail.send("dave@remote.test")
    delivery_id = sent.remote[0].id

    worker = DeliveryWorker(mail.store)
    await worker.start()
    await eventually(lambda: _leased(mail, delivery_id))
    await worker.stop(0.2)

    assert first.received == []
    delivery = await mail.delivery(delivery_id)
    assert (delivery.status, delivery.attempts) == ("queued", 0)
    assert delivery.next_attempt_at <= utcnow()  # due again at once, for whoever comes next
    jobs = await mail.queued_jobs()
    assert jobs and all(job.claimed_by is None for job in jobs)


async def _no_jobs_left(mail: Mail) -> bool:
    return await mail.queued_jobs() == []


async def _leased(mail: Mail, delivery_id: str) -> bool:
    return (await mail.delivery(delivery_id)).next_attempt_at > utcnow() + timedelta(minutes=1)
