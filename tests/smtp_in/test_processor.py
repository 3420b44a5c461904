"""The processor files accepted mail as designed (issue 3, point 7), on SQLite and PostgreSQL.

Messages enter exactly as the SMTP server leaves them (our Received: line, a committed
inbound row) and are read back from the database, the blob store, the cache and the bus.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from postroom.events import user_channel
from postroom.settings import Settings
from smtp_in.processor import process_inbound
from smtp_in.received import received_header
from storage.db.models import Attachment, Blob, InboundMessage, Mailbox, Message, MessageContent
from storage.registry import Storage, open_storage
from storage.repositories import inbound
from storage.repositories.accounts import add_domain, add_user, find_user
from storage.schema import migrate

PASSWORD = "correct-horse-battery"
HOSTNAME = "mx.postroom.test"
PDF = b"%PDF-1.4 quarterly numbers\n" * 40


def prepared_settings(database_url: str, folder: Path) -> Settings:
    """A migrated database with ann, bob and carol of example.test (shared by modules)."""
    settings = Settings(data_dir=folder, database_url=database_url, hostname=HOSTNAME)
    migrate(database_url)

    async def users() -> None:
        store = open_storage(settings)
        try:
            async with store.db.session() as session, session.begin():
                await add_domain(session, "example.test")
                for name in ("ann", "bob", "carol"):
                    await add_user(session, f"{name}@example.test", PASSWORD)
        finally:
            await store.close()

    asyncio.run(users())
    return settings


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[Storage]:
    store = open_storage(settings)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return prepared_settings(database_url, tmp_path_factory.mktemp("processor"))


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Storage]:
    async with opened(settings) as store:
        yield store


def arrived(raw: bytes, recipient: str | None = "bob@example.test") -> bytes:
    """``raw`` as our SMTP server stores it: with its Received: line on top."""
    header = received_header(
        helo="mx.remote.test",
        peer_ip="127.0.0.1",
        hostname=HOSTNAME,
        protocol="ESMTP",
        queue_id="q1",
        recipient=recipient,
    )
    return header + raw


async def deliver(
    store: Storage, raw: bytes, rcpt: list[str] | None = None, source: str = "smtp"
) -> tuple[InboundMessage, list[Message]]:
    rcpt = rcpt or ["bob@example.test"]
    row = await inbound.accept(
        store,
        arrived(raw, rcpt[0] if len(rcpt) == 1 else None),
        mail_from="zed@remote.test",
        rcpt_to=rcpt,
        source=source,
        peer="127.0.0.1",
        helo="mx.remote.test",
    )
    await process_inbound(store, row.id)
    async with store.db.session() as session:
        copies = (await session.scalars(select(Message).where(Message.inbound_id == row.id))).all()
    return row, list(copies)


def mail(subject: str, body: str = "Hello.\r\n", headers: str = "") -> bytes:
    return (
        f"From: Zed <zed@remote.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
        f"{headers}\r\n{body}"
    ).encode()


def with_attachment(subject: str, data: bytes = PDF) -> bytes:
    import base64

    encoded = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return (
        "From: Zed <zed@remote.test>\r\nTo: bob@example.test\r\n"
        f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        "--outer\r\n"
        'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "The numbers are attached.\r\n"
        "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<p>The <b>numbers</b> are attached.</p>\r\n"
        "--alt--\r\n"
        "--outer\r\n"
        'Content-Type: application/pdf; name="q3.pdf"\r\n'
        'Content-Disposition: attachment; filename="q3.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{encoded}"
        "--outer--\r\n"
    ).encode()


async def test_bodies_attachment_headers_and_snippet_are_stored(store: Storage) -> None:
    row, copies = await deliver(store, with_attachment("Q3 numbers"))

    assert len(copies) == 1
    copy = copies[0]
    assert copy.subject == "Q3 numbers"
    assert (copy.from_name, copy.from_address) == ("Zed", "zed@remote.test")
    assert copy.to_addresses == ["bob@example.test"]
    assert copy.snippet == "The numbers are attached."
    assert copy.has_attachments
    async with store.db.session() as session:
        content = await session.get(MessageContent, copy.blob_key)
        attachments = (
            await session.scalars(select(Attachment).where(Attachment.content_key == copy.blob_key))
        ).all()
        inbox = await session.get(Mailbox, copy.mailbox_id)
        done = await session.get(InboundMessage, row.id)
    assert content is not None
    assert content.text_body == "The numbers are attached."  # the CRLF belongs to the boundary
    assert "<b>numbers</b>" in content.html_body
    assert inbox is not None and inbox.role == "inbox"
    assert done is not None and done.status == "done"
    assert [(a.filename, a.content_type, a.size) for a in attachments] == [
        ("q3.pdf", "application/pdf", len(PDF))
    ]
    assert await store.blobs.get(attachments[0].blob_key) == PDF
    # without inspection (no checks configured) the stored bytes are what arrived
    assert await store.blobs.get(copy.blob_key) == await store.blobs.get(row.blob_key)


async def test_a_file_sent_to_many_is_stored_once(store: Storage) -> None:
    _, first = await deliver(
        store, with_attachment("Deck for all"), rcpt=["ann@example.test", "bob@example.test"]
    )
    _, second = await deliver(store, with_attachment("Deck again"), rcpt=["carol@example.test"])

    assert len(first) == 2 and len(second) == 1
    assert first[0].blob_key == first[1].blob_key, "one stored content for every copy"
    async with store.db.session() as session:
        rows = (
            await session.scalars(
                select(Attachment).where(
                    Attachment.content_key.in_([first[0].blob_key, second[0].blob_key])
                )
            )
        ).all()
        assert len(rows) == 2  # one per distinct message, not per recipient
        assert len({a.blob_key for a in rows}) == 1, "the same file is one blob"
        blob_rows = await session.scalar(
            select(func.count()).select_from(Blob).where(Blob.key == rows[0].blob_key)
        )
    assert blob_rows == 1
    folder = Path(store.settings.data_dir, "blobs")
    files = await asyncio.to_thread(lambda: list(folder.rglob(rows[0].blob_key + "*")))
    assert len(files) == 1


async def test_replies_thread_by_references_and_by_subject(store: Storage) -> None:
    _, [start] = await deliver(
        store, mail("Plans for Friday", headers="Message-ID: <start@remote.test>\r\n")
    )
    _, [reply] = await deliver(
        store,
        mail(
            "Different words entirely",
            headers="Message-ID: <r1@remote.test>\r\nIn-Reply-To: <start@remote.test>\r\n",
        ),
    )
    _, [deeper] = await deliver(
        store,
        mail("x", headers="References: <start@remote.test> <r1@remote.test>\r\n"),
    )
    _, [by_subject] = await deliver(store, mail("RE: Fwd: plans for  friday"))
    _, [unrelated] = await deliver(store, mail("Plans for Friday"))  # not a reply: new thread

    assert reply.thread_id == start.thread_id
    assert deeper.thread_id == start.thread_id
    assert by_subject.thread_id == start.thread_id
    assert unrelated.thread_id != start.thread_id


async def test_new_mail_is_cached_as_the_gateway_reads_it(store: Storage) -> None:
    from gateway.routes.messages import _content

    _, [copy] = await deliver(store, with_attachment("Cached"))

    cached = await store.cache.get(f"content:{copy.blob_key}")
    assert cached is not None
    await store.cache.delete(f"content:{copy.blob_key}")
    async with store.db.session() as session:
        from_database = await _content(store, session, copy.blob_key)  # type: ignore[arg-type]
    assert json.loads(cached) == from_database


async def test_mail_new_is_published_after_commit(store: Storage) -> None:
    async with store.db.session() as session:
        bob = await find_user(session, "bob@example.test")
    assert bob is not None
    async with store.bus.subscribe(user_channel(bob.id)) as events:
        _, [copy] = await deliver(store, mail("Published"))
        kinds: list[str] = []
        async with asyncio.timeout(5):
            async for event in events:
                kinds.append(event.type)
                if event.type == "mail.new":
                    assert event.data["message"]["id"] == copy.id
                    assert event.data["message"]["mailbox"] == "inbox"
                    break
    assert "mail.new" in kinds


async def test_a_job_seen_twice_files_once(store: Storage) -> None:
    row, copies = await deliver(store, mail("Twice"))
    await process_inbound(store, row.id)
    async with store.db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Message).where(Message.inbound_id == row.id)
        )
    assert len(copies) == 1 and count == 1
