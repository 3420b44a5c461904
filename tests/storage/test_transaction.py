"""Changes are logged per user with gapless seqs, and published only once they are committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.events import Event, user_channel
from storage.db.models import Change, User
from storage.registry import Storage
from storage.repositories.accounts import add_domain, add_user, hosted_domain
from storage.transaction import record_change, transaction


async def _new_user(store: Storage, address: str) -> str:
    async with store.db.session() as s, s.begin():
        domain = address.rsplit("@", 1)[1]
        if await hosted_domain(s, domain) is None:
            await add_domain(s, domain)
        user = await add_user(s, address, "correct horse battery")
        return user.id


async def _seqs(store: Storage, user_id: str) -> list[int]:
    async with store.db.session() as s:
        return list(
            await s.scalars(
                select(Change.seq).where(Change.user_id == user_id).order_by(Change.seq)
            )
        )


async def _change_seq(store: Storage, user_id: str) -> int:
    async with store.db.session() as s:
        seq = await s.scalar(select(User.change_seq).where(User.id == user_id))
        assert seq is not None
        return seq


class Listener:
    """Every event published on one user's channel, collected in the background."""

    def __init__(self) -> None:
        self.received: list[Event] = []
        self._arrived = asyncio.Condition()

    async def collect(self, events: AsyncIterator[Event]) -> None:
        async for event in events:
            async with self._arrived:
                self.received.append(event)
                self._arrived.notify_all()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(5), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)


@asynccontextmanager
async def _listening(store: Storage, user_id: str) -> AsyncIterator[Listener]:
    listener = Listener()
    async with store.bus.subscribe(user_channel(user_id)) as events:
        task = asyncio.create_task(listener.collect(events))
        try:
            yield listener
        finally:
            task.cancel()


async def _settle() -> None:
    """Give the background collector every chance to see an event already published."""
    for _ in range(10):
        await asyncio.sleep(0.01)


async def test_events_are_published_only_after_commit(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = await _new_user(store, "ann@example.test")
    sessions: list[AsyncSession] = []
    open_at_publish: list[bool] = []
    publish = store.bus.publish

    async def watched_publish(channel: str, event: Event) -> None:
        open_at_publish.append(sessions[0].in_transaction())
        await publish(channel, event)

    monkeypatch.setattr(store.bus, "publish", watched_publish)

    async with _listening(store, user_id) as listener:
        async with transaction(store) as session:
            sessions.append(session)
            recorded = await record_change(session, user_id, "mail.new", {"message_id": "m1"})
            await _settle()
            assert listener.received == [], "published before the transaction ended"
        await listener.until(1)

    assert open_at_publish == [False], "published while the transaction was still open"
    assert listener.received == [recorded]
    assert recorded == Event(type="mail.new", user_id=user_id, seq=1, data={"message_id": "m1"})
    assert await _seqs(store, user_id) == [1], "the change the event announced was committed"


async def test_a_failed_transaction_publishes_and_records_nothing(store: Storage) -> None:
    user_id = await _new_user(store, "ann@example.test")

    async with _listening(store, user_id) as listener:
        with pytest.raises(RuntimeError, match="boom"):
            async with transaction(store) as session:
                await record_change(session, user_id, "mail.new", {"message_id": "m1"})
                await record_change(session, user_id, "mail.new", {"message_id": "m2"})
                raise RuntimeError("boom")
        await _settle()
        assert listener.received == []

    assert await _seqs(store, user_id) == []
    assert await _change_seq(store, user_id) == 0

    async with transaction(store) as session:
        event = await record_change(session, user_id, "mail.new", {"message_id": "m3"})
    assert event.seq == 1, "the rolled-back changes must not use up seq numbers"


async def test_seq_is_per_user_starts_at_1_and_has_no_gaps(store: Storage) -> None:
    ann = await _new_user(store, "ann@example.test")
    bob = await _new_user(store, "bob@example.test")

    seen: dict[str, list[int]] = {ann: [], bob: []}
    for user_id in (ann, bob, ann, ann, bob):
        async with transaction(store) as session:
            event = await record_change(session, user_id, "mail.flags", {})
        seen[user_id].append(event.seq)
    async with transaction(store) as session:  # several changes in one transaction
        first = await record_change(session, bob, "mail.flags", {})
        second = await record_change(session, bob, "mail.flags", {})
    seen[bob] += [first.seq, second.seq]

    assert seen == {ann: [1, 2, 3], bob: [1, 2, 3, 4]}
    assert await _seqs(store, ann) == [1, 2, 3]
    assert await _seqs(store, bob) == [1, 2, 3, 4]
    assert await _change_seq(store, bob) == 4


async def test_concurrent_transactions_get_distinct_consecutive_seqs(store: Storage) -> None:
    """20 writers for one user at once: the change log still reads 1..20, nothing lost."""
    user_id = await _new_user(store, "ann@example.test")

    async def change(n: int) -> Event:
        async with transaction(store) as session:
            event = await record_change(session, user_id, "mail.new", {"n": n})
            await asyncio.sleep(0)  # let the other writers pile up behind this one
            return event

    async with _listening(store, user_id) as listener:
        events = await asyncio.gather(*(change(n) for n in range(20)))
        await listener.until(20)

    assert sorted(e.seq for e in events) == list(range(1, 21))
    assert sorted(e.seq for e in listener.received) == list(range(1, 21))
    assert await _seqs(store, user_id) == list(range(1, 21))
    assert await _change_seq(store, user_id) == 20
