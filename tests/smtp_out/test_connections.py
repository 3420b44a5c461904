"""Connections to other servers: reuse, per-host caps, TLS modes, SIZE, rates, the smarthost."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from smtp_out.worker import DeliveryWorker, build_policy
from storage.registry import Storage
from tests.smtp_out.conftest import MX1, MX2, Mail, Peers, Recorder

SMARTHOST = "127.0.0.5"


def _configure(store: Storage, **settings: Any) -> Any:
    """A ``run_worker(configure=...)`` hook giving the worker a policy built from ``settings``."""

    changed = store.settings.model_copy(update=settings)

    def configure(worker: DeliveryWorker) -> None:
        worker.policy = build_policy(changed)
        worker.consumers.options = replace(
            worker.consumers.options, concurrency=changed.delivery_concurrency
        )

    return configure


async def test_consecutive_messages_to_one_host_share_a_connection(
    mail: Mail, peers: Peers
) -> None:
    first = await peers.receiver(MX1)
    for n in range(3):
        await mail.send(f"dave{n}@remote.test", subject=f"#{n}")

    await mail.run_worker(configure=_configure(mail.store, delivery_concurrency=1))

    assert sorted(m.rcpt_tos[0] for m in first.received) == [
        "dave0@remote.test",
        "dave1@remote.test",
        "dave2@remote.test",
    ]
    assert len({m.peer for m in first.received}) == 1, "one connection carried all three"


async def test_no_more_connections_per_host_than_allowed(mail: Mail, peers: Peers) -> None:
    busy = 0
    most = 0

    class Counting(Recorder):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            nonlocal busy, most
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.2)
            busy -= 1
            return await super().handle_DATA(server, session, envelope)

    recorder = Counting()
    controller = Controller(recorder, hostname=MX1, port=peers.port, ready_timeout=10)
    await asyncio.to_thread(controller.start)
    try:
        for n in range(6):
            await mail.send(f"dave{n}@remote.test")
        await mail.run_worker(
            configure=_configure(
                mail.store, delivery_concurrency=6, delivery_connections_per_host=2
            )
        )
    finally:
        await asyncio.to_thread(controller.stop)

    assert len(recorder.received) == 6
    assert most == 2, "six deliveries at once, but never more than two connections"


async def test_tls_off_never_starts_tls(
    mail: Mail, peers: Peers, tls_context: ssl.SSLContext
) -> None:
    receiver = await peers.receiver(MX1, tls=tls_context)
    await mail.send("dave@remote.test")
    await mail.run_worker(configure=_configure(mail.store, delivery_tls="off"))
    assert [m.tls for m in receiver.received] == [False]


async def test_tls_required_uses_tls_when_offered(
    mail: Mail, peers: Peers, tls_context: ssl.SSLContext
) -> None:
    receiver = await peers.receiver(MX1, tls=tls_context)
    await mail.send("dave@remote.test")
    await mail.run_worker(configure=_configure(mail.store, delivery_tls="require"))
    assert [m.tls for m in receiver.received] == [True]


async def test_tls_required_skips_a_host_without_it_and_defers(
    mail: Mail, peers: Peers, tls_context: ssl.SSLContext
) -> None:
    plain = await peers.receiver(MX1)
    await mail.send("dave@remote.test")
    await mail.run_worker(configure=_configure(mail.store, delivery_tls="require"))

    assert plain.received == []
    recipient = await mail.recipient("dave@remote.test")
    assert recipient.status == "deferred"
    assert "TLS is required" in (recipient.remote_reply or "")


async def test_a_message_over_the_servers_size_limit_bounces_unsent(
    mail: Mail, peers: Peers
) -> None:
    recorder = Recorder()
    controller = Controller(
        recorder, hostname=MX1, port=peers.port, data_size_limit=2000, ready_timeout=10
    )
    await asyncio.to_thread(controller.start)
    try:
        await mail.send("dave@remote.test", text="x" * 5000)
        await mail.run_worker()
    finally:
        await asyncio.to_thread(controller.stop)

    assert recorder.received == []
    recipient = await mail.recipient("dave@remote.test")
    assert recipient.status == "bounced"
    assert (recipient.remote_reply or "").startswith("552 5.3.4")


async def test_over_the_domain_rate_mail_waits_and_is_not_lost(mail: Mail, peers: Peers) -> None:
    receiver = await peers.receiver(MX1)
    sent = [await mail.send(f"dave{n}@remote.test") for n in range(3)]

    async def two_delivered_one_postponed() -> bool:
        deliveries = [await mail.delivery(s.remote[0].id) for s in sent]
        postponed = [
            d for d in deliveries if d.next_attempt_at - d.created_at > timedelta(seconds=10)
        ]
        return len(receiver.received) == 2 and len(postponed) == 1

    await mail.run_worker(
        two_delivered_one_postponed,
        configure=_configure(mail.store, delivery_domain_rate="2/minute"),
    )
    await asyncio.sleep(0.5)  # a third delivery would have happened by now

    assert len(receiver.received) == 2
    waiting = [
        d for d in [await mail.delivery(s.remote[0].id) for s in sent] if d.status == "queued"
    ]
    assert len(waiting) == 1, "the third waits in the queue"
    assert waiting[0].attempts == 0, "waiting for a rate is not a failed attempt"
    assert waiting[0].next_attempt_at - waiting[0].created_at > timedelta(seconds=10)


@pytest.fixture
async def smarthost(peers: Peers, tls_certificate: tuple[Path, Path]) -> Any:
    """A relay on 127.0.0.5 that wants STARTTLS then AUTH as relay-user / relay-pass."""
    recorder = Recorder()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_certificate)

    def authenticator(
        server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        good = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"relay-user",
            b"relay-pass",
        )
        return AuthResult(success=good, handled=False)  # handled=False: aiosmtpd replies 535

    controller = Controller(
        recorder,
        hostname=SMARTHOST,
        port=peers.port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        ready_timeout=10,
    )
    await asyncio.to_thread(controller.start)
    yield recorder
    await asyncio.to_thread(controller.stop)


async def test_smarthost_relays_everything_with_auth(
    mail: Mail, peers: Peers, smarthost: Recorder
) -> None:
    mx = await peers.receiver(MX2)
    url = f"smtp://relay-user:relay-pass@{SMARTHOST}:{peers.port}?verify=0"
    # no MX lookup at all: even a domain that does not exist goes to the relay
    await mail.send("dave@remote.test", "erin@does-not-exist.test")

    await mail.run_worker(configure=_configure(mail.store, smarthost_url=url))

    assert mx.received == []
    assert sorted(r for m in smarthost.received for r in m.rcpt_tos) == [
        "dave@remote.test",
        "erin@does-not-exist.test",
    ]
    assert all(m.tls for m in smarthost.received)
    assert [r.status for r in await mail.recipients()] == ["delivered", "delivered"]


async def test_smarthost_with_wrong_credentials_defers(
    mail: Mail, peers: Peers, smarthost: Recorder
) -> None:
    url = f"smtp://relay-user:wrong@{SMARTHOST}:{peers.port}?verify=0"
    await mail.send("dave@remote.test")
    await mail.run_worker(configure=_configure(mail.store, smarthost_url=url))

    assert smarthost.received == []
    recipient = await mail.recipient("dave@remote.test")
    assert recipient.status == "deferred"
    assert "authentication failed: 535" in (recipient.remote_reply or "")


async def test_smarthost_rate_holds_the_rest_in_the_queue(
    mail: Mail, peers: Peers, smarthost: Recorder
) -> None:
    url = f"smtp://relay-user:relay-pass@{SMARTHOST}:{peers.port}?verify=0"
    await mail.send("dave@remote.test")
    await mail.send("erin@elsewhere.test")

    async def one_delivered() -> bool:
        return len(smarthost.received) == 1

    await mail.run_worker(
        one_delivered,
        configure=_configure(mail.store, smarthost_url=url, smarthost_rate="1/day"),
    )
    await asyncio.sleep(0.5)
    assert len(smarthost.received) == 1
    statuses = sorted(r.status for r in await mail.recipients())
    assert statuses == ["delivered", "queued"]
