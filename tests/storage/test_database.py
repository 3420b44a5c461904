"""The two kinds of session: readers never wait for a writer, and never write; writers of one
process queue for each other instead of failing on a locked database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from postroom.settings import Settings
from storage.db import database
from storage.db.models import Domain
from storage.registry import Storage
from tests.support.services import postgres_database
from tests.support.stores import migrated_storage


async def _domains(store: Storage) -> set[str]:
    async with store.db.reader() as reader:
        return set((await reader.scalars(select(Domain.name))).all())


async def test_a_reader_reads_committed_data_while_a_write_transaction_is_open(
    store: Storage,
) -> None:
    async with store.db.session() as session, session.begin():
        session.add(Domain(name="before.test"))
    writing, read = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        async with store.db.session() as session, session.begin():
            session.add(Domain(name="during.test"))
            await session.flush()  # the write lock is held from here until the commit
            writing.set()
            await read.wait()

    writer = asyncio.create_task(write())
    await writing.wait()
    seen = await _domains(store)
    read.set()
    await writer
    assert seen == {"before.test"}
    assert await _domains(store) == {"before.test", "during.test"}


async def test_a_reader_refuses_to_write(store: Storage) -> None:
    async with store.db.reader() as reader:
        reader.add(Domain(name="never.test"))
        with pytest.raises(RuntimeError, match=r"db\.session\(\)"):
            await reader.flush()
    assert await _domains(store) == set()


async def test_concurrent_writers_of_one_process_all_commit(store: Storage) -> None:
    async def add(n: int) -> None:
        async with store.db.session() as session, session.begin():
            session.add(Domain(name=f"d{n}.test"))
            await session.flush()
            await asyncio.sleep(0)  # let the others try to begin meanwhile

    await asyncio.gather(*(add(n) for n in range(30)))
    assert await _domains(store) == {f"d{n}.test" for n in range(30)}


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
async def postgres_store(postgres_url: str, tmp_path: Path) -> AsyncIterator[Storage]:
    async with migrated_storage(Settings(data_dir=tmp_path, database_url=postgres_url)) as store:
        yield store


async def test_postgresql_ends_a_transaction_left_idle_and_frees_its_locks(
    postgres_store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frozen process must not hold its row locks, and everyone waiting on them, forever.

    (PostgreSQL only: SQLite has no server that could end a transaction.)
    """
    store = postgres_store
    async with store.db.session() as session, session.begin():
        session.add(Domain(name="locked.test"))
    monkeypatch.setattr(database, "IDLE_IN_TRANSACTION_SECONDS", 1)
    frozen = database.open_postgresql(store.db.url)
    try:
        async with frozen.session() as holder:
            await holder.execute(
                update(Domain).where(Domain.name == "locked.test").values(name="held.test")
            )
            # the holder now sits idle inside its transaction, holding the row lock
            async with store.db.session() as other, other.begin():
                await asyncio.wait_for(
                    other.execute(
                        update(Domain).where(Domain.name == "locked.test").values(name="free.test")
                    ),
                    timeout=30,
                )
            with pytest.raises(DBAPIError):
                await holder.commit()
    finally:
        await frozen.close()
    assert await _domains(store) == {"free.test"}
