"""Suppression after hard bounces (issue 4, point 7): the worker lists, the send refuses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from postroom.errors import InvalidInput
from storage.db.models import OutboundMessage, Suppression
from storage.db.types import utcnow
from storage.repositories import suppressions
from tests.smtp_out.conftest import MX1, Mail, Peers


async def _entries(mail: Mail) -> dict[str, Suppression]:
    async with mail.store.db.session() as session:
        return {row.address: row for row in await suppressions.list_all(session)}


async def _outbound_count(mail: Mail) -> int:
    async with mail.store.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboundMessage)) or 0)


async def test_a_550_suppresses_and_a_later_send_is_refused(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"nobody@remote.test": "550 5.1.1 no such user"})
    await mail.send("dave@remote.test", "Nobody@remote.test")
    before = utcnow()

    await mail.run_worker()

    entries = await _entries(mail)
    assert list(entries) == ["nobody@remote.test"]  # dave was delivered
    entry = entries["nobody@remote.test"]
    assert (entry.reason, entry.source) == ("550 5.1.1 no such user", "bounce")
    assert entry.expires_at is not None
    assert abs(entry.expires_at - entry.created_at - timedelta(days=30)) < timedelta(seconds=1)
    assert before - timedelta(minutes=1) < entry.created_at <= utcnow()

    sends = await _outbound_count(mail)
    with pytest.raises(InvalidInput) as refused:
        await mail.send("dave@remote.test", "NOBODY@remote.test")
    assert refused.value.field == "to[1]"
    assert "NOBODY@remote.test is on the suppression list" in refused.value.message
    assert "550 5.1.1 no such user" in refused.value.message
    assert "postroom suppression remove nobody@remote.test" in refused.value.message
    assert await _outbound_count(mail) == sends  # nothing stored, nothing queued


async def test_an_expired_entry_does_not_block(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"nobody@remote.test": "550 5.1.1 no such user"})
    await mail.send("nobody@remote.test")
    await mail.run_worker()
    async with mail.store.db.session() as session, session.begin():
        await session.execute(
            update(Suppression).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    sent = await mail.send("nobody@remote.test")

    assert len(sent.remote) == 1
    assert await _entries(mail) == {}  # expired entries are not listed either


async def test_a_removed_entry_does_not_block(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"nobody@remote.test": "550 5.1.1 no such user"})
    await mail.send("nobody@remote.test")
    await mail.run_worker()
    async with mail.store.db.session() as session, session.begin():
        assert await suppressions.remove(session, "Nobody@Remote.test")

    await mail.send("nobody@remote.test")


async def test_the_suppression_time_comes_from_the_settings(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"nobody@remote.test": "550 5.1.1 no such user"})
    mail.store.settings.suppression_days = 2.0
    await mail.send("nobody@remote.test")

    await mail.run_worker()

    entry = (await _entries(mail))["nobody@remote.test"]
    assert entry.expires_at is not None
    assert abs(entry.expires_at - entry.created_at - timedelta(days=2)) < timedelta(seconds=1)


async def test_a_domain_that_does_not_exist_is_suppressed(mail: Mail) -> None:
    await mail.send("anyone@missing.test")

    await mail.run_worker()

    entry = (await _entries(mail))["anyone@missing.test"]
    assert entry.reason == "550 5.1.2 the domain missing.test does not exist"


@pytest.mark.parametrize(
    "refusal",
    [
        "550 5.7.1 message refused as spam",  # about the message, not the address
        "552 5.2.2 mailbox full",  # passes
        "451 4.7.1 greylisted",  # not a bounce at all
    ],
)
async def test_refusals_not_about_the_address_suppress_nothing(
    mail: Mail, peers: Peers, refusal: str
) -> None:
    await peers.receiver(MX1, refuse={"dave@remote.test": refusal})
    await mail.send("dave@remote.test")

    await mail.run_worker()

    assert await _entries(mail) == {}


async def test_giving_up_suppresses_nothing(mail: Mail, peers: Peers) -> None:
    await peers.receiver(MX1, refuse={"dave@remote.test": "451 4.7.1 greylisted"})
    sent = await mail.send("dave@remote.test")
    await mail.set_delivery(sent.remote[0].id, created_at=utcnow() - timedelta(days=5, hours=1))

    await mail.run_worker()

    assert (await mail.recipient("dave@remote.test")).status == "bounced"
    assert await _entries(mail) == {}
