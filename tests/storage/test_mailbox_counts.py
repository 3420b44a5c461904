"""A mailbox's total and unread are kept by the database (migration 0016): after every kind of
write they equal a count of its messages, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import case, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Update

from postroom.ids import new_id
from postroom.message import parse_message
from postroom.settings import Settings
from storage.db.models import Mailbox, Message, User
from storage.outbox import submit
from storage.registry import Storage
from storage.repositories import mail
from storage.repositories.accounts import add_domain, add_user, delete_user
from storage.schema import alembic_config, migrate
from storage.transaction import transaction
from tests.support.gateway_api import compose
from tests.support.stores import migrated_storage

Counts = dict[str, tuple[int, int]]


async def _kept(session: AsyncSession, user: User) -> Counts:
    """What the mailbox list answers."""
    return {
        box.name: (total, unread)
        for box, total, unread in await mail.mailbox_counts(session, user.id)
    }


async def _counted(session: AsyncSession, user: User) -> Counts:
    """The same, counted from the messages the slow way."""
    counts = (
        select(
            Message.mailbox_id.label("id"),
            func.count().label("total"),
            func.sum(case((Message.seen.is_(False), 1), else_=0)).label("unread"),
        )
        .group_by(Message.mailbox_id)
        .subquery()
    )
    rows = await session.execute(
        select(Mailbox.name, counts.c.total, counts.c.unread)
        .outerjoin(counts, counts.c.id == Mailbox.id)
        .where(Mailbox.user_id == user.id)
    )
    return {name: (int(total or 0), int(unread or 0)) for name, total, unread in rows}


async def _check(store: Storage, user: User) -> Counts:
    async with store.db.reader() as session:
        kept, counted = await _kept(session, user), await _counted(session, user)
    assert kept == counted
    return kept


async def _deliver(store: Storage, user: User, subject: str, mailbox: str = "inbox") -> Message:
    raw = compose(subject)
    key = await store.blobs.put(raw)
    async with transaction(store) as session:
        box = await mail.find_mailbox(session, user.id, mailbox)
        await mail.register_blob(session, key, len(raw))
        await mail.store_content(session, key, parse_message(raw), [])
        return await mail.add_copy(
            session,
            user_id=user.id,
            mailbox=box,
            raw_key=key,
            size=len(raw),
            parsed=parse_message(raw),
        )


async def _user(store: Storage, address: str) -> User:
    async with store.db.session() as session, session.begin():
        if not await session.scalar(select(func.count()).select_from(User)):
            await add_domain(session, "example.test")
        return await add_user(session, address, "a long password")


async def test_counts_follow_filing_sending_flags_moves_and_deletes(store: Storage) -> None:
    ann = await _user(store, "ann@example.test")
    received = [await _deliver(store, ann, f"in {n}") for n in range(5)]
    assert (await _check(store, ann))["Inbox"] == (5, 5)

    # the outbox's bulk insert, several copies in one statement
    await asyncio.gather(
        *(
            submit(store, ann, compose(f"out {n}"), recipients=["dan@remote.test"], bcc=[])
            for n in range(4)
        )
    )
    assert (await _check(store, ann))["Sent"] == (4, 0)

    ids = [m.id for m in received]
    async with transaction(store) as session:
        await mail.set_flags(session, ann.id, ids[:3], seen=True)
    assert (await _check(store, ann))["Inbox"] == (5, 2)
    async with transaction(store) as session:
        await mail.set_flags(session, ann.id, ids[:3], flagged=True)  # no count moves
        await mail.set_flags(session, ann.id, ids[:1], seen=False)
    assert (await _check(store, ann))["Inbox"] == (5, 3)

    async with transaction(store) as session:
        folder = await mail.create_mailbox(session, ann.id, "Receipts")
        archive = await mail.find_mailbox(session, ann.id, "archive")
        await mail.move_messages(session, ann.id, ids[:2], folder)
        await mail.move_messages(session, ann.id, ids[2:3], archive)
    counts = await _check(store, ann)
    assert (counts["Inbox"], counts["Receipts"], counts["Archive"]) == ((2, 2), (2, 1), (1, 0))

    async with transaction(store) as session:
        await mail.delete_messages(session, ann.id, ids[3:])  # to Trash
    assert (await _check(store, ann))["Trash"] == (2, 2)
    async with transaction(store) as session:
        await mail.delete_messages(session, ann.id, ids[3:])  # for good
        await mail.delete_mailbox(session, ann.id, folder.id)  # its mail goes to Trash
    counts = await _check(store, ann)
    assert (counts["Inbox"], counts["Trash"]) == ((0, 0), (2, 1))
    assert "Receipts" not in counts

    # a statement of the engine's own, outside the repositories, is counted too
    async with store.db.session() as session, session.begin():
        await session.execute(update(Message).where(Message.user_id == ann.id).values(seen=False))
        await session.execute(delete(Message).where(Message.subject == "out 0"))
    counts = await _check(store, ann)
    assert counts["Sent"] == (3, 3)


async def test_a_user_deleted_with_its_mail_leaves_the_others_counts_alone(
    store: Storage,
) -> None:
    ann, bob = await _user(store, "ann@example.test"), await _user(store, "bob@example.test")
    for n in range(3):
        await _deliver(store, ann, f"ann {n}")
        await _deliver(store, bob, f"bob {n}")
    async with store.db.session() as session, session.begin():
        await delete_user(session, ann.address, acting_user_id=bob.id)
        assert (
            await session.scalar(
                select(func.count()).select_from(Mailbox).where(Mailbox.user_id == ann.id)
            )
            == 0
        )
    assert (await _check(store, bob))["Inbox"] == (3, 3)


async def test_upgrading_counts_the_mail_already_there(
    own_database_url: str, tmp_path: Path
) -> None:
    """Migration 0016 fills the new columns from the messages a mailbox already holds."""
    settings = Settings(data_dir=tmp_path, database_url=own_database_url)
    async with migrated_storage(settings) as store:
        ann = await _user(store, "ann@example.test")
        for n in range(4):
            await _deliver(store, ann, f"old {n}")
        async with transaction(store) as session:
            first = await session.scalar(select(Message.id).where(Message.subject == "old 0"))
            assert first is not None
            await mail.set_flags(session, ann.id, [first], seen=True)
        config = alembic_config(store.db.url)
        await asyncio.to_thread(command.downgrade, config, "0015")
        async with store.db.session() as session:
            columns = await session.execute(text("SELECT * FROM mailboxes"))
            assert "total" not in columns.keys()
        await asyncio.to_thread(migrate, store.db.url)
        assert (await _check(store, ann))["Inbox"] == (4, 3)


@pytest.mark.parametrize("own_database_url", ["postgresql"], indirect=True)
async def test_a_move_waits_for_the_users_lock_before_taking_a_mailboxs(store: Storage) -> None:
    """PostgreSQL: a send bumps its user, then files the Sent copy; a move into Sent changes
    messages, then bumps. The trigger takes the user's lock before the mailbox's, so the move
    waits for the send instead of the two each holding what the other needs (a deadlock)."""
    ann = await _user(store, "ann@example.test")
    message = await _deliver(store, ann, "to be moved")
    async with store.db.session() as session:
        sent_id = await session.scalar(
            select(Mailbox.id).where(Mailbox.user_id == ann.id, Mailbox.role == "sent")
        )
    bump = update(User).where(User.id == ann.id).values(change_seq=User.change_seq + 1)
    sender, mover = store.db.engine.connect(), store.db.engine.connect()
    async with sender as send, mover as move:
        await send.begin()
        await send.execute(bump)
        moved = asyncio.ensure_future(
            _move_then_bump(move, message.id, sent_id, bump)  # waits for the sender
        )
        await asyncio.sleep(0.5)
        assert not moved.done()
        await _copy_into(send, message.id, sent_id)  # the send's copy, filed after its bump
        await send.commit()
        await asyncio.wait_for(moved, 10)
    counts = await _check(store, ann)
    assert (counts["Inbox"], counts["Sent"]) == ((0, 0), (2, 2))


_MESSAGES = Message.__table__


async def _move_then_bump(
    connection: AsyncConnection, message_id: str, mailbox_id: str, bump: Update
) -> None:
    await connection.begin()
    await connection.execute(
        update(_MESSAGES).where(_MESSAGES.c.id == message_id).values(mailbox_id=mailbox_id)
    )
    await connection.execute(bump)
    await connection.commit()


async def _copy_into(connection: AsyncConnection, message_id: str, mailbox_id: str) -> None:
    row = (
        (await connection.execute(select(_MESSAGES).where(_MESSAGES.c.id == message_id)))
        .mappings()
        .one()
    )
    copy = dict(row) | {"id": new_id(), "mailbox_id": mailbox_id, "inbound_id": None}
    await connection.execute(insert(_MESSAGES), copy)
