"""Attempts share their database writes and their connections without stepping on each other.

Leases asked for at the same moment are taken in one statement, yet a delivery hinted twice
is still leased once; a connection goes from one message to the next without an RSET unless
the last transaction was left open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from postroom.errors import Conflict
from smtp_out.batches import give_back, take_lease
from storage.db.types import utcnow
from storage.queues.group_commit import GroupCommit
from storage.repositories import queue_admin
from tests.smtp_out.conftest import MX1, Mail, Peers, Recorder
from tests.smtp_out.test_connections import _configure


async def test_hints_arriving_together_lease_each_delivery_once(mail: Mail) -> None:
    first = (await mail.send("carol@remote.test")).remote[0].id
    second = (await mail.send("dave@remote.test")).remote[0].id

    leases = await asyncio.gather(
        *(take_lease(mail.store.db, delivery_id, 60.0) for delivery_id in [first, second] * 3)
    )

    taken = [lease for lease in leases if lease is not None]
    assert sorted(lease.delivery.id for lease in taken) == sorted([first, second])
    for lease in taken:
        row = await mail.delivery(lease.delivery.id)
        assert row.next_attempt_at == lease.until
        assert lease.recipients.pending() == [
            "carol@remote.test" if lease.delivery.id == first else "dave@remote.test"
        ]
    assert await take_lease(mail.store.db, first, 60.0) is None, "leased: not due"


class CountingResets(Recorder):
    resets: int = 0

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        self.resets += 1
        return "250 OK"


async def test_rset_only_after_a_transaction_left_open(mail: Mail, peers: Peers) -> None:
    receiver = CountingResets(refuse={"nobody@remote.test": "550 5.1.1 no such user"})
    controller = Controller(receiver, hostname=MX1, port=peers.port, ready_timeout=10)
    await asyncio.to_thread(controller.start)
    try:
        await mail.send("carol@remote.test", subject="#1")
        await mail.send("nobody@remote.test", subject="#2")  # refused: MAIL left open
        await mail.send("dave@remote.test", subject="#3")
        await mail.send("erin@remote.test", subject="#4")
        await mail.run_worker(configure=_configure(mail.store, delivery_concurrency=1))
    finally:
        await asyncio.to_thread(controller.stop)

    assert [m.rcpt_tos for m in receiver.received] == [
        ["carol@remote.test"],
        ["dave@remote.test"],
        ["erin@remote.test"],
    ]
    assert len({m.peer for m in receiver.received}) == 1, "one connection carried all"
    assert receiver.resets == 1, "one RSET: after the transaction no recipient was accepted in"
    assert (await mail.recipient("nobody@remote.test")).status == "bounced"


async def test_a_failing_request_fails_alone_and_the_rest_of_its_batch_is_written() -> None:
    batches: list[list[str]] = []

    async def write(requests: Sequence[str]) -> list[str]:
        batches.append(list(requests))
        await asyncio.sleep(0)
        if "bad" in requests:
            raise ValueError("bad request")
        return [request.upper() for request in requests]

    group: GroupCommit[str, str] = GroupCommit(write)
    answers = await asyncio.gather(
        *(group.submit(request) for request in ("a", "b", "bad", "c")), return_exceptions=True
    )

    assert answers[:2] == ["A", "B"] and answers[3] == "C"
    assert isinstance(answers[2], ValueError)
    assert batches == [["a", "b", "bad", "c"], ["a"], ["b"], ["bad"], ["c"]]


async def test_a_retry_never_hands_out_a_leased_delivery(mail: Mail) -> None:
    delivery_id = (await mail.send("carol@remote.test")).remote[0].id
    leased = await take_lease(mail.store.db, delivery_id, 600.0)
    assert leased is not None

    # an admin's retry while the attempt is under way must not make the row due again, or a
    # second worker would take it and send the message a second time
    with pytest.raises(Conflict, match="being attempted"):
        await queue_admin.retry(mail.store, delivery_id)
    assert await take_lease(mail.store.db, delivery_id, 600.0) is None

    await give_back(mail.store.db, delivery_id, leased.until)  # the attempt failed early
    retried = await queue_admin.retry(mail.store, delivery_id)
    assert retried.status == "queued"
    assert await take_lease(mail.store.db, delivery_id, 600.0) is not None


async def test_a_retry_makes_a_deferred_delivery_due_at_once(mail: Mail) -> None:
    delivery_id = (await mail.send("carol@remote.test")).remote[0].id
    now = utcnow()
    await mail.set_delivery(
        delivery_id, status="deferred", next_attempt_at=now + timedelta(hours=1), updated_at=now
    )
    assert await take_lease(mail.store.db, delivery_id, 600.0) is None, "not due yet"

    await queue_admin.retry(mail.store, delivery_id)

    assert await take_lease(mail.store.db, delivery_id, 600.0) is not None
