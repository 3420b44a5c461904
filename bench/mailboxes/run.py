"""bench/mailboxes: what a mailbox's size costs the writes and reads that report its counts.

Every change to a mailbox logs its total and unread (``mailbox.counts``), the mailbox list
shows them, and every send logs its Sent's. Since migration 0016 the database keeps them in
the mailbox's row; before, each was counted from the messages. This bench times, through
the repositories on a fresh database per engine:

- **list**: ``mail.mailbox_counts`` (what ``GET /mailboxes`` reads);
- **mark read**: ``mail.set_flags(seen=True)`` on one message, with its ``mailbox.counts``
  change, in its own transaction (what ``PATCH /messages/{id}`` writes), then unread again.

each for a user whose Inbox holds ``--messages`` messages (100 000) and for one whose Inbox
holds 10, interleaved. Ratio: the small user's median time over the big user's; 1.0x means
the size costs nothing. Reported, not asserted.

    .venv/bin/python -m bench.mailboxes.run [--messages 100000] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path

from sqlalchemy import insert

from bench.support import markdown_table, note, write_result
from postroom.ids import new_id
from postroom.message import parse_message
from postroom.settings import Settings
from storage.blobs import blob_key
from storage.db.models import Message, Thread, User
from storage.db.types import utcnow
from storage.registry import Storage
from storage.repositories import mail
from storage.repositories.accounts import add_domain, add_user
from storage.transaction import transaction
from tests.support.gateway_api import compose
from tests.support.services import postgres_database
from tests.support.stores import migrated_storage

SMALL = 10
CHUNK = 5000


async def _seed(store: Storage, user: User, count: int) -> str:
    """``count`` messages in the user's Inbox, a fifth unread, inserted in bulk (filing them
    one by one through SMTP would take an hour): the first one's id."""
    raw = compose("seed")
    parsed = parse_message(raw)
    key = blob_key(raw + user.id.encode())  # no file behind it: nothing here reads it
    now = utcnow()
    async with store.db.session() as session, session.begin():
        inbox = await mail.find_mailbox(session, user.id, "inbox")
        await mail.register_blob(session, key, len(raw))
        await mail.store_content(session, key, parsed, [])
        thread = new_id()
        await session.execute(
            insert(Thread), [{"id": thread, "user_id": user.id, "last_message_at": now}]
        )
    first = ""
    for start in range(0, count, CHUNK):
        rows = []
        for n in range(start, min(count, start + CHUNK)):
            row = mail.copy_row(
                user_id=user.id,
                mailbox_id=inbox.id,
                thread_id=thread,
                raw_key=key,
                size=len(raw),
                parsed=parsed,
                received_at=now,
                seen=n % 5 != 0,
            )
            rows.append(row)
        async with store.db.session() as session, session.begin():
            await session.execute(insert(Message), rows)
        first = first or rows[0]["id"]
    return first


async def _timed(action: Awaitable[None]) -> float:
    began = time.perf_counter()
    await action
    return (time.perf_counter() - began) * 1000


async def _measure(store: Storage, messages: int, rounds: int) -> list[list[str]]:
    async with store.db.session() as session, session.begin():
        await add_domain(session, "bench-mailboxes.test")
        big = await add_user(session, "big@bench-mailboxes.test", "a long password")
        small = await add_user(session, "small@bench-mailboxes.test", "a long password")
    note(f"seeding {messages} messages")
    targets = {
        user.id: await _seed(store, user, n) for user, n in ((big, messages), (small, SMALL))
    }
    times: dict[tuple[str, str], list[float]] = {}

    async def listed(user: User) -> None:
        async with store.db.reader() as session:
            await mail.mailbox_counts(session, user.id)

    async def marked(user: User, seen: bool) -> None:
        async with transaction(store) as session:
            await mail.set_flags(session, user.id, [targets[user.id]], seen=seen)

    for n in range(rounds):
        for user in (big, small):
            for name, action in (("list", listed(user)), ("mark read", marked(user, n % 2 == 0))):
                times.setdefault((name, user.id), []).append(await _timed(action))
    table = []
    for name in ("list", "mark read"):
        at_big = statistics.median(times[(name, big.id)])
        at_small = statistics.median(times[(name, small.id)])
        table.append([name, f"{at_small:.2f}", f"{at_big:.2f}", f"{at_small / at_big:.2f}x"])
    return table


async def _engine(url: str, folder: Path, messages: int, rounds: int) -> list[list[str]]:
    settings = Settings(data_dir=folder, database_url=url)
    async with migrated_storage(settings) as store:
        return await _measure(store, messages, rounds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mailboxes.run", description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    rows: list[list[str]] = []
    for engine in args.databases.split(","):
        note(f"{engine}: {args.messages} messages, {args.rounds} rounds")
        with tempfile.TemporaryDirectory(prefix="bench-mailboxes-") as folder:
            if engine == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(folder) / 'postroom.db'}"
                table = asyncio.run(_engine(url, Path(folder), args.messages, args.rounds))
            else:
                with postgres_database() as url:
                    table = asyncio.run(_engine(url, Path(folder), args.messages, args.rounds))
        rows += [[engine, *row] for row in table]
    markdown = (
        "## mailboxes\n\n"
        f"Median ms of {args.rounds} rounds, interleaved, for an Inbox of {SMALL} messages and "
        f"one of {args.messages}; ratio: the small one's time over the big one's (1.0x: the "
        "mailbox's size costs nothing).\n\n"
        + markdown_table(
            ["engine", "operation", f"{SMALL} msgs", f"{args.messages} msgs", "ratio"], rows, 2
        )
    )
    print(markdown)
    write_result("mailboxes", markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
