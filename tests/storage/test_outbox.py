"""The outbox records sends in batches: each send whole, in order, and failing only itself."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import Conflict, InvalidInput
from postroom.message import parse_message
from search.documents import send_document
from storage.db.models import (
    Change,
    Delivery,
    InboundMessage,
    Message,
    OutboundMessage,
    SearchDocument,
    SendSchedule,
    User,
)
from storage.db.types import utcnow
from storage.outbox import Origin, submit
from storage.queues import INCOMING, OUTGOING
from storage.registry import Storage
from storage.repositories import suppressions
from storage.repositories.accounts import add_domain, add_user
from storage.repositories.outbound import NewSend, RecordedSend, record_sends
from storage.transaction import transaction
from tests.support.gateway_api import compose


async def _users(store: Storage, *addresses: str) -> list[User]:
    async with store.db.session() as session, session.begin():
        await add_domain(session, "example.test")
        return [await add_user(session, a, "a long password") for a in addresses]


async def _log(store: Storage, user: User) -> list[Change]:
    async with store.db.reader() as session:
        return list(
            await session.scalars(
                select(Change).where(Change.user_id == user.id).order_by(Change.seq)
            )
        )


def _new(user: User, raw: bytes, key: str, recipients: list[str]) -> NewSend:
    return NewSend(
        sender=user,
        raw_key=key,
        size=len(raw),
        parsed=parse_message(raw),
        attachment_keys=[],
        recipients=recipients,
        bcc=[],
        local_domains={"example.test"},
    )


async def _numbered(
    store: Storage, user: User, n: int, to: list[str], **options: Any
) -> RecordedSend:
    """Send #n from ``user`` to ``to`` through the outbox, with ``submit``'s ``options``."""
    raw = compose(f"#{n}", sender=user.address, to=", ".join(to))
    return await submit(store, user, raw, recipients=to, bcc=[], **options)


async def test_one_batch_records_every_send_as_alone(store: Storage) -> None:
    ann, bob, carl = await _users(
        store, "ann@example.test", "bob@example.test", "carl@example.test"
    )
    first = compose("Plans", sender=ann.address, to="dan@remote.test")
    reply = compose("Re: Plans", sender=ann.address, to="dan@remote.test")
    answer = compose(
        "About it",
        sender=ann.address,
        to="carl@example.test",
        in_reply_to=parse_message(first).message_id,
    )
    other = compose("Hello", sender=bob.address, to="carl@example.test, eve@remote.test")
    sends = [
        _new(ann, first, "a" * 64, ["dan@remote.test"]),
        _new(ann, reply, "b" * 64, ["dan@remote.test"]),
        _new(bob, other, "c" * 64, ["carl@example.test", "eve@remote.test"]),
        _new(ann, answer, "d" * 64, ["carl@example.test"]),
    ]
    async with transaction(store) as session:
        recorded = await record_sends(session, sends)

    assert [len(r.remote) for r in recorded] == [1, 1, 1, 0]
    assert [len(r.local) for r in recorded] == [0, 0, 1, 1]
    async with store.db.reader() as session:
        copies = {m.id: m for m in await session.scalars(select(Message).order_by(Message.id))}
        threads = [copies[str(r.outbound.sent_message_id)].thread_id for r in recorded]
        documents = await session.scalar(select(func.count()).select_from(SearchDocument))
        inbound = list(await session.scalars(select(InboundMessage.status)))
    # The reply joins its subject's thread and the answer its parent's, though neither
    # parent was committed when they were threaded.
    assert threads[0] == threads[1] == threads[3] != threads[2]
    assert inbound == ["pending", "pending"]
    assert documents == 0  # indexing is the caller's hook, not the outbox's

    log = await _log(store, ann)
    assert [c.seq for c in log] == list(range(1, 7))
    assert [c.kind for c in log] == ["mail.new", "mailbox.counts"] * 3
    assert [c.payload["mailbox"]["total"] for c in log[1::2]] == [1, 2, 3]
    assert [c.payload["message"]["id"] for c in log[::2]] == [
        r.outbound.sent_message_id for r in (recorded[0], recorded[1], recorded[3])
    ]
    assert [c.seq for c in await _log(store, bob)] == [1, 2]
    assert await _log(store, carl) == []  # local mail is filed later, by the processors


async def test_concurrent_sends_each_commit_whole_and_a_failure_stays_alone(
    store: Storage,
) -> None:
    ann, bob = await _users(store, "ann@example.test", "bob@example.test")

    async def refuse(session: AsyncSession, recorded: RecordedSend) -> None:
        raise Conflict("this one may not go")

    async def send(user: User, n: int) -> RecordedSend:
        hook = refuse if n == 3 else None
        return await _numbered(store, user, n, ["dan@remote.test"], on_record=hook)

    results = await asyncio.gather(
        *(send(ann if n % 2 else bob, n) for n in range(8)), return_exceptions=True
    )

    failed = [n for n, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [3]
    assert isinstance(results[3], Conflict)
    async with store.db.reader() as session:
        senders = Counter(await session.scalars(select(OutboundMessage.user_id)))
        deliveries = await session.scalar(select(func.count()).select_from(Delivery))
        subjects = set(await session.scalars(select(Message.subject)))
    assert senders == {ann.id: 3, bob.id: 4}
    assert deliveries == 7
    assert subjects == {f"#{n}" for n in range(8)} - {"#3"}
    for user, sent in ((ann, 3), (bob, 4)):
        log = await _log(store, user)
        assert [c.seq for c in log] == list(range(1, 2 * sent + 1))
        assert [c.payload["mailbox"]["total"] for c in log[1::2]] == list(range(1, sent + 1))


async def test_a_batch_waits_for_the_database_twice(store: Storage, hand_offs: list[str]) -> None:
    """Each wait for an answer also waits for the busy event loop, so a batch of sends waits
    only for the change log's bump (which reads the Sent mailboxes too) and the commit: on
    SQLite two hand-offs to the connection's thread; on PostgreSQL, between BEGIN and COMMIT,
    the bump and one statement for every table's rows (and, with the queue in the database,
    its hints)."""
    ann, bob = await _users(store, "ann@example.test", "bob@example.test")
    hand_offs.clear()  # the connection's setup
    statements: list[str] = []

    @event.listens_for(store.db.engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    async def send(user: User, n: int) -> RecordedSend:
        to = ["dan@remote.test", "eve@other.test"]
        return await _numbered(store, user, n, to, index=send_document)

    await asyncio.gather(*(send(ann if n % 2 else bob, n) for n in range(6)))

    if store.db.engine.dialect.name == "sqlite":
        assert hand_offs and hand_offs == ["_run", "_commit"] * (len(hand_offs) // 2)
    else:
        # the bump, the batch's rows (one statement), the table queue's hints
        assert statements and statements == ["UPDATE", "WITH", "INSERT"] * (len(statements) // 3)
    async with store.db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(OutboundMessage)) == 6
        assert await session.scalar(select(func.count()).select_from(SearchDocument)) == 6


async def test_each_send_due_now_leaves_its_workers_a_hint(store: Storage) -> None:
    """Every remote delivery gets an outgoing job and every local copy an incoming one; a send
    that fails leaves no job behind (the embedded queue writes them in the send's own
    transaction)."""
    ann, _bob = await _users(store, "ann@example.test", "bob@example.test")

    async def refuse(session: AsyncSession, recorded: RecordedSend) -> None:
        raise Conflict("this one may not go")

    async def send(n: int) -> RecordedSend:
        to = ["bob@example.test", "dan@remote.test"]
        return await _numbered(store, ann, n, to, on_record=refuse if n == 2 else None)

    results = await asyncio.gather(*(send(n) for n in range(4)), return_exceptions=True)
    recorded = [r for r in results if isinstance(r, RecordedSend)]
    assert len(recorded) == 3

    outgoing = await store.queue.claim(OUTGOING, "w", limit=100, wait=0)
    incoming = await store.queue.claim(INCOMING, "w", limit=100, wait=0)
    assert sorted(j.payload["delivery_id"] for j in outgoing) == sorted(
        d.id for r in recorded for d in r.remote
    )
    assert sorted(j.payload["inbound_id"] for j in incoming) == sorted(
        row.id for r in recorded for row in r.local
    )


@pytest.mark.parametrize("due_in", [0, 3600])
async def test_a_due_send_is_scheduled_with_its_deliveries(store: Storage, due_in: int) -> None:
    (ann,) = await _users(store, "ann@example.test")
    await _users_extra(store)
    raw = compose("later", sender=ann.address, to="bob@example.test, dan@remote.test")
    due = utcnow() + timedelta(seconds=due_in)
    recorded = await submit(
        store, ann, raw, recipients=["bob@example.test", "dan@remote.test"], bcc=[], send_at=due
    )
    async with store.db.reader() as session:
        schedule = await session.get_one(SendSchedule, recorded.outbound.id)
        remote = await session.get_one(Delivery, recorded.remote[0].id)
        local = await session.get_one(InboundMessage, recorded.local[0].id)
    assert schedule.send_at >= due - timedelta(seconds=1)
    assert remote.next_attempt_at == schedule.send_at
    assert local.status == ("scheduled" if due_in else "pending")


async def _users_extra(store: Storage) -> None:
    async with store.db.session() as session, session.begin():
        await add_user(session, "bob@example.test", "a long password")


async def test_recipients_are_checked_before_anything_is_written(store: Storage) -> None:
    """Unknown local users and suppressed addresses are refused; expired entries are not."""
    (ann,) = await _users(store, "ann@example.test")
    async with store.db.session() as session, session.begin():
        await suppressions.suppress(session, "Gone@remote.test", "550 no such user", None)
        await suppressions.suppress(
            session, "back@remote.test", "550", 1, now=utcnow() - timedelta(days=2)
        )
    raw = compose("x", sender=ann.address, to="dan@remote.test")

    for recipient, field, problem in (
        ("nobody@example.test", "to[0]", "no such user here"),
        ("gone@remote.test", "cc[1]", "on the suppression list"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await submit(
                store,
                ann,
                raw,
                recipients=["dan@remote.test", recipient],
                bcc=[],
                origins={recipient: Origin(field, recipient)},
            )
        assert refused.value.field == field and problem in refused.value.message
    async with store.db.reader() as session:
        assert await session.scalar(select(func.count()).select_from(OutboundMessage)) == 0

    recorded = await submit(store, ann, raw, recipients=["back@remote.test"], bcc=[])
    assert [d.domain for d in recorded.remote] == ["remote.test"]
