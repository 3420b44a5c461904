"""Outgoing mail is DKIM-signed with its domain's key (issue 4, point 9), end to end.

A message is sent as the API sends it, a real worker delivers it to an aiosmtpd receiver, and
the receiver's copy is verified as a receiving MTA would: dkimpy fetching our public key from a
real DNS server (dnsmasq) through dnspython. The DNS server publishes the record of the key the
test's domain got when it was added, so it is started after that domain exists, on a port the
settings named beforehand.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dkim
import dns.exception
import dns.resolver
import pytest
from sqlalchemy import update

from postroom.dkim import DkimRecord, dns_record
from postroom.settings import Settings
from storage.db.models import Domain, OutboundMessage
from storage.registry import Storage
from storage.repositories.accounts import add_domain, add_user
from storage.repositories.mail import register_blob
from tests.smtp_out.conftest import MX1, ZONE, Mail, Peers, Recorder
from tests.support.dnsmasq import Dnsmasq, DnsmasqFailed
from tests.support.services import require
from tests.support.stores import migrated_storage

PASSWORD = "a long password"


@pytest.fixture
def dnsmasq() -> Iterator[Dnsmasq]:
    try:
        server = Dnsmasq()
    except DnsmasqFailed as exc:
        require(False, str(exc))
        raise
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Verifier:
    """dkimpy's verification, its key lookups going to the test DNS server."""

    resolver: dns.resolver.Resolver
    asked: list[str] = field(default_factory=list)

    def lookup(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's ``dnsfunc``: the TXT strings of ``name``, joined, or None."""
        self.asked.append(name.decode())
        try:
            answer = self.resolver.resolve(name.decode(), "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    async def verify(self, message: bytes) -> bool:
        return bool(await asyncio.to_thread(dkim.verify, message, dnsfunc=self.lookup))


@dataclass
class World:
    store: Storage
    record: DkimRecord
    receiver: Recorder
    verifier: Verifier
    ann: Mail
    """Sends from example.test, which has a key."""
    carol: Mail
    """Sends from plain.test, hosted before DKIM: no key."""


@pytest.fixture
async def world(
    tmp_path: Path, own_database_url: str, delivery_port: int, peers: Peers, dnsmasq: Dnsmasq
) -> AsyncIterator[World]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=own_database_url,
        blob_url=f"file://{tmp_path / 'blobs'}",
        redis_url=None,
        delivery_port=delivery_port,
        dns_nameservers=f"127.0.0.1:{dnsmasq.port}",
        hostname="postroom.test",
    )
    async with migrated_storage(settings) as store:
        async with store.db.session() as session, session.begin():
            example = await add_domain(session, "example.test")
            ann = await add_user(session, "ann@example.test", PASSWORD)
            session.add(Domain(name="plain.test"))
            await session.flush()
            carol = await add_user(session, "carol@plain.test", PASSWORD)
        assert example.dkim_selector is not None and example.dkim_private_key is not None
        record = dns_record(example.name, example.dkim_selector, example.dkim_private_key)
        # One argument per DNS string, as the admin is told to publish it.
        txt = f"--txt-record={record.name},{','.join(record.strings)}"
        await asyncio.to_thread(dnsmasq.start, [*ZONE, txt], record.name, "TXT")
        yield World(
            store=store,
            record=record,
            receiver=await peers.receiver(MX1),
            verifier=Verifier(dnsmasq.resolver()),
            ann=Mail(store, ann),
            carol=Mail(store, carol),
        )


async def _delivered(mail: Mail) -> None:
    await mail.run_worker()
    recipient = await mail.recipient("dave@remote.test")
    assert recipient.status == "delivered", recipient.remote_reply


async def test_mail_from_a_domain_with_a_key_arrives_signed_and_verifies(world: World) -> None:
    await world.ann.send("dave@remote.test", subject="Signed", text="Noon?")

    await _delivered(world.ann)

    [received] = world.receiver.received
    assert received.content.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert await world.verifier.verify(received.content)
    assert world.verifier.asked == ["postroom._domainkey.example.test."]
    # The check is not vacuous: what a relay might change, the signature catches.
    assert not await world.verifier.verify(received.content.replace(b"Noon?", b"Nine?"))


async def test_mail_from_a_domain_without_a_key_arrives_unsigned(world: World) -> None:
    await world.carol.send("dave@remote.test", subject="Unsigned")

    await _delivered(world.carol)

    [received] = world.receiver.received
    assert b"Subject: Unsigned" in received.content
    assert re.search(rb"(?im)^dkim-signature:", received.content) is None
    assert world.verifier.asked == []


@pytest.mark.parametrize("bare_cr", [False, True], ids=["bare LF", "bare LF and a bare CR"])
async def test_a_message_with_bare_lf_line_endings_still_verifies(
    world: World, bare_cr: bool
) -> None:
    sent = await world.ann.send("dave@remote.test", subject="Bare LF", text="one\ntwo\nthree")
    # Make the stored message what a careless client would have handed us: LF only, and in
    # the second case one bare CR too (dkimpy alone would sign that as part of a line).
    raw = await world.store.blobs.get(sent.outbound.blob_key)
    bare = raw.replace(b"\r\n", b"\n")
    if bare_cr:
        bare = bare.replace(b"one\ntwo", b"one\rtwo")
    assert b"\r\n" not in bare
    key = await world.store.blobs.put(bare)
    async with world.store.db.session() as session, session.begin():
        await register_blob(session, key, len(bare))
        await session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == sent.outbound.id)
            .values(blob_key=key)
        )

    await _delivered(world.ann)

    [received] = world.receiver.received
    assert received.content.startswith(b"DKIM-Signature: ")
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", received.content) is None, "CRLF on the wire"
    assert await world.verifier.verify(received.content)
