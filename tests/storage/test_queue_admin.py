"""The outbound queue's admin operations, on SQLite and PostgreSQL, over a real send."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import dns.asyncresolver
import pytest
from sqlalchemy import select, update

from postroom.cli import main
from postroom.errors import Conflict, InvalidInput, NotFound
from smtp_out.attempt import Policy, attempt_delivery
from smtp_out.connections import Connections, SessionOptions
from storage.db.models import Delivery, DeliveryRecipient
from storage.db.types import utcnow
from storage.outbox import submit
from storage.queues import OUTGOING
from storage.registry import Storage
from storage.repositories import queue_admin
from storage.repositories.accounts import add_domain, add_user
from tests.support.gateway_api import compose

RECIPIENTS = ["bob@remote.test", "carl@remote.test", "dan@other.test"]


async def _send(store: Storage) -> dict[str, str]:
    """Ann sends to two remote domains; the delivery id per domain."""
    async with store.db.session() as session, session.begin():
        await add_domain(session, "example.test")
        ann = await add_user(session, "ann@example.test", "a long password")
    raw = compose(sender="ann@example.test", to=", ".join(RECIPIENTS))
    recorded = await submit(store, ann, raw, recipients=RECIPIENTS, bcc=[])
    await _drain(store)
    return {d.domain: d.id for d in recorded.remote}


async def _drain(store: Storage) -> list[str]:
    """The delivery ids hinted to the workers since the last drain."""
    jobs = await store.queue.claim(OUTGOING, "test", limit=100, wait=0)
    for job in jobs:
        await store.queue.ack(job)
    return [job.payload["delivery_id"] for job in jobs]


async def _worker_attempt(store: Storage, delivery_id: str) -> float | None:
    """What a delivery worker does with a hint: claim the row if it may, then deliver."""
    connections = Connections(SessionOptions(port=9, helo="test", connect_timeout=1))
    policy = Policy(connections=connections, deadline=5)
    return await attempt_delivery(store, delivery_id, dns.asyncresolver.Resolver(), policy)


async def test_hold_keeps_a_delivery_from_the_workers_until_released(store: Storage) -> None:
    ids = await _send(store)
    async with store.db.session() as session:
        listed = await queue_admin.list_entries(session)
    assert {(e.domain, e.status, e.recipient_count) for e in listed} == {
        ("remote.test", "queued", 2),
        ("other.test", "queued", 1),
    }
    assert {e.sender for e in listed} == {"ann@example.test"}

    held = await queue_admin.hold(store, ids["remote.test"], "  looks like\tspam ")
    assert (held.status, held.held_reason) == ("held", "looks like spam")
    assert await _worker_attempt(store, held.id) is None
    async with store.db.session() as session:
        shown = await queue_admin.show(session, held.id)
        only_held = await queue_admin.list_entries(session, status="held")
    assert shown.status == "held"
    assert [(r.address, r.status) for r in shown.recipients] == [
        ("bob@remote.test", "queued"),
        ("carl@remote.test", "queued"),
    ]
    assert [e.id for e in only_held] == [held.id]
    with pytest.raises(Conflict, match="is held"):
        await queue_admin.retry(store, held.id)
    with pytest.raises(Conflict, match="is held"):
        await queue_admin.hold(store, held.id)

    released = await queue_admin.release(store, held.id)
    assert (released.status, released.held_reason) == ("queued", None)
    assert released.next_attempt_at <= utcnow()
    assert await _drain(store) == [held.id]
    with pytest.raises(Conflict, match="only held deliveries"):
        await queue_admin.release(store, held.id)


async def test_releasing_a_content_check_hold_reopens_its_recipients(store: Storage) -> None:
    ids = await _send(store)
    delivery_id = ids["remote.test"]
    async with store.db.session() as session, session.begin():  # as smtp_out's content check
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status="held", held_reason="spam", last_error="spam")
        )
        await session.execute(
            update(DeliveryRecipient)
            .where(DeliveryRecipient.delivery_id == delivery_id)
            .values(status="held", remote_reply="spam")
        )
    released = await queue_admin.release(store, delivery_id)
    assert [(r.status, r.reply) for r in released.recipients] == [("queued", None)] * 2


async def test_retry_makes_due_and_delete_cancels_keeping_the_rows(store: Storage) -> None:
    ids = await _send(store)
    later = utcnow() + timedelta(hours=1)
    async with store.db.session() as session, session.begin():  # as after a failed attempt
        await session.execute(
            update(Delivery)
            .where(Delivery.id == ids["other.test"])
            .values(status="deferred", attempts=1, next_attempt_at=later, last_error="451 busy")
        )
    retried = await queue_admin.retry(store, ids["other.test"])
    assert (retried.status, retried.attempts) == ("deferred", 1)
    assert retried.next_attempt_at <= utcnow()
    assert await _drain(store) == [ids["other.test"]]

    with pytest.raises(InvalidInput) as bad:
        await queue_admin.hold(store, ids["other.test"], "x" * 501)
    assert bad.value.field == "reason"
    deleted = await queue_admin.delete(store, ids["other.test"])
    assert deleted.status == "cancelled"
    assert [r.status for r in deleted.recipients] == ["cancelled"]
    assert await _worker_attempt(store, deleted.id) is None
    async with store.db.session() as session:
        in_queue = await queue_admin.list_entries(session)
        cancelled = await queue_admin.list_entries(session, status="cancelled")
        statuses = set(
            await session.scalars(
                select(DeliveryRecipient.status).where(
                    DeliveryRecipient.delivery_id == ids["other.test"]
                )
            )
        )
        with pytest.raises(NotFound):
            await queue_admin.show(session, "no-such-delivery")
        with pytest.raises(InvalidInput):
            await queue_admin.list_entries(session, status="lost")
    assert [e.id for e in in_queue] == [ids["remote.test"]]
    assert [e.id for e in cancelled] == [ids["other.test"]]
    assert statuses == {"cancelled"}
    for action in (queue_admin.retry, queue_admin.hold, queue_admin.release, queue_admin.delete):
        with pytest.raises(Conflict, match="is cancelled"):
            await action(store, ids["other.test"])


async def test_the_command_line_drives_the_same_queue(
    store: Storage, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await _send(store)
    monkeypatch.setenv("POSTROOM_DATA_DIR", str(store.settings.data_dir))
    monkeypatch.setenv("POSTROOM_DATABASE_URL", store.settings.database_url)

    async def run(*args: str) -> tuple[int, list[str], str]:
        """``postroom queue ARGS`` in a thread (it runs its own event loop), output captured."""
        code = await asyncio.to_thread(main, ["queue", *args])
        out, err = capsys.readouterr()
        return code, out.splitlines(), err

    code, lines, _ = await run("list")
    assert code == 0
    assert sorted(line.split("\t")[:3] for line in lines) == sorted(
        [[ids["remote.test"], "queued", "remote.test"], [ids["other.test"], "queued", "other.test"]]
    )
    code, lines, _ = await run("hold", ids["remote.test"], "--reason", "manual check")
    assert code == 0
    assert lines[0].split("\t")[1] == "held" and lines[0].endswith("manual check")
    assert [line.split("\t")[:2] for line in lines[1:]] == [
        ["  bob@remote.test", "queued"],
        ["  carl@remote.test", "queued"],
    ]
    code, lines, error = await run("release", ids["other.test"])
    assert (code, lines) == (2, [])
    assert error.strip().endswith("is queued: only held deliveries can be released")
    code, lines, _ = await run("delete", ids["remote.test"])
    assert code == 0
    async with store.db.session() as session:
        assert (await queue_admin.show(session, ids["remote.test"])).status == "cancelled"
        assert (await queue_admin.show(session, ids["other.test"])).status == "queued"
