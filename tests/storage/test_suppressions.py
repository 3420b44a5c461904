"""The suppression repository: upsert, expiry, removal, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from storage.db.types import utcnow
from storage.registry import Storage
from storage.repositories import suppressions


async def test_suppress_refreshes_an_existing_entry(store: Storage) -> None:
    first = utcnow() - timedelta(days=3)
    async with store.db.session() as session, session.begin():
        await suppressions.suppress(session, "Dave@remote.test", "550 old", 30, now=first)
    async with store.db.session() as session, session.begin():
        await suppressions.suppress(session, "dave@remote.test", "550 5.1.1 new", 10)

    async with store.db.session() as session:
        [entry] = await suppressions.list_all(session, include_expired=True)
    assert (entry.address, entry.reason, entry.source) == (
        "dave@remote.test",
        "550 5.1.1 new",
        "bounce",
    )
    assert entry.created_at > first + timedelta(days=2)
    assert entry.expires_at is not None
    assert abs(entry.expires_at - entry.created_at - timedelta(days=10)) < timedelta(seconds=1)


async def test_active_leaves_out_expired_and_unlisted(store: Storage) -> None:
    long_ago = utcnow() - timedelta(days=31)
    async with store.db.session() as session, session.begin():
        await suppressions.suppress(session, "old@remote.test", "550", 30, now=long_ago)
        await suppressions.suppress(session, "new@remote.test", "550", 30)
        await suppressions.suppress(session, "kept@remote.test", "manual", None, source="admin")

    async with store.db.session() as session:
        found = await suppressions.active(
            session, ["OLD@remote.test", "New@Remote.test", "kept@remote.test", "x@remote.test"]
        )
        listed = [row.address for row in await suppressions.list_all(session)]
        everything = await suppressions.list_all(session, include_expired=True)
        assert await suppressions.active(session, []) == {}
    assert sorted(found) == ["kept@remote.test", "new@remote.test"]
    assert found["kept@remote.test"].expires_at is None
    assert listed == ["kept@remote.test", "new@remote.test"]
    assert len(everything) == 3


async def test_remove(store: Storage) -> None:
    async with store.db.session() as session, session.begin():
        await suppressions.suppress(session, "dave@remote.test", "550", 30)
    async with store.db.session() as session, session.begin():
        assert await suppressions.remove(session, " Dave@Remote.TEST ")
        assert not await suppressions.remove(session, "dave@remote.test")
        assert not await suppressions.remove(session, "not an address")
    async with store.db.session() as session:
        assert await suppressions.list_all(session, include_expired=True) == []
