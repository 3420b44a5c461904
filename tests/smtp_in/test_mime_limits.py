"""MIME bombs and broken mail are delivered, never dropped, never fatal (issue 3, point 8).

Each hostile message is generated here, accepted as the SMTP server accepts it, processed, and
then looked for where the user would look: a copy in the Inbox whose raw bytes are exactly
what arrived, with the defects recorded in its stored content.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import smtp_in.processor
from postroom.message import MAX_ATTACHMENTS, MAX_DEPTH, MAX_PARTS, parse_message
from postroom.settings import Settings
from storage.db.models import InboundMessage, Mailbox, Message, MessageContent
from storage.registry import Storage
from tests.smtp_in.test_processor import deliver, opened, prepared_settings


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return prepared_settings(database_url, tmp_path_factory.mktemp("limits"))


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Storage]:
    async with opened(settings) as store:
        yield store


HEAD = "From: Mallory <m@remote.test>\r\nTo: bob@example.test\r\nMIME-Version: 1.0\r\n"


def many_parts(count: int) -> bytes:
    parts = "".join(f"--b\r\nContent-Type: text/plain\r\n\r\npart {n}\r\n" for n in range(count))
    return (
        f"{HEAD}Subject: {count} parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        f"{parts}--b--\r\n"
    ).encode()


def nested_multiparts(depth: int) -> bytes:
    opening = "".join(
        f"--b{n}\r\nContent-Type: multipart/mixed; boundary=b{n + 1}\r\n\r\n" for n in range(depth)
    )
    closing = "".join(f"--b{n}--\r\n" for n in reversed(range(depth)))
    return (
        f"{HEAD}Subject: nested {depth}\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
        f"{opening}--b{depth}\r\nContent-Type: text/plain\r\n\r\ndeep inside\r\n{closing}"
    ).encode()


def nested_messages(depth: int) -> bytes:
    wrappers = "Content-Type: message/rfc822\r\n\r\n" * depth
    return f"{HEAD}Subject: russian dolls\r\n{wrappers}Subject: inner\r\n\r\nhi\r\n".encode()


BROKEN = {
    "garbage bytes": bytes(range(256)) * 64,
    "NUL and 8-bit in headers": (
        b"Subject: caf\xe9 \x00 menu\r\nFrom: \xff\xfe <\x00x@remote.test>\r\n"
        b"To: bob@example.test\r\n\r\nbody \x00 with NUL\r\n"
    ),
    "broken base64": (
        f"{HEAD}Subject: broken base64\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "SGVsbG8*&^%$ not base64 at all ===\r\n"
        "--b\r\nContent-Type: application/octet-stream; name=x.bin\r\n"
        "Content-Disposition: attachment; filename=x.bin\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nAAAA=BBB=\r\n--b--\r\n"
    ).encode(),
    "unknown and lying charsets": (
        f"{HEAD}Subject: =?x-no-such-charset?q?hello?= =?utf-8?b?////?=\r\n"
        "Content-Type: text/plain; charset=x-no-such-charset\r\n\r\n"
    ).encode()
    + b"caf\xe9 \xff\xfe\r\n",
    "no header at all": b"\r\n\r\njust a body\r\n",
    "unterminated multipart": (
        f"{HEAD}Subject: cut short\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nthe rest never came\r\n"
    ).encode(),
    "absurd header values": (
        f"From: {'a' * 5000}@remote.test\r\nTo: bob@example.test\r\n"
        f"Message-ID: <{'x' * 3000}@remote.test>\r\nSubject: {'long ' * 2000}\r\n"
        f"References: {' '.join(f'<{n}@r.test>' for n in range(5000))}\r\n\r\nbody\r\n"
    ).encode(),
}


async def _filed(store: Storage, raw: bytes) -> tuple[MessageContent, Message]:
    """Deliver ``raw``; return its stored content and its copy in Bob's Inbox."""
    row, copies = await deliver(store, raw)
    assert len(copies) == 1, "the message was filed, not dropped"
    async with store.db.session() as session:
        content = await session.get(MessageContent, copies[0].blob_key)
        mailbox = await session.get(Mailbox, copies[0].mailbox_id)
        done = await session.get(InboundMessage, row.id)
    assert mailbox is not None and mailbox.role == "inbox"
    assert done is not None and done.status == "done"
    assert content is not None
    stored = await store.blobs.get(copies[0].blob_key)
    assert stored == await store.blobs.get(row.blob_key)
    assert stored.endswith(raw), "the raw message is kept whole"
    return content, copies[0]


async def test_5000_parts_are_delivered_with_the_first_thousand_read(store: Storage) -> None:
    content, copy = await _filed(store, many_parts(5000))
    assert content.defects == [
        f"more than {MAX_PARTS} MIME parts; the rest is unread",
        f"more than {MAX_ATTACHMENTS} attachments; the rest stay in the raw message",
    ]
    assert content.text_body == "part 0"
    assert copy.has_attachments


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        (nested_multiparts(MAX_DEPTH + 5), f"nested deeper than {MAX_DEPTH}"),
        (nested_multiparts(900), "headers only"),
        (nested_messages(3000), "headers only"),
    ],
    ids=["just past the depth cap", "900 levels", "3000 nested messages"],
)
async def test_deep_nesting_is_delivered_with_its_headers(
    store: Storage, raw: bytes, defect: str
) -> None:
    content, _ = await _filed(store, raw)
    assert any(defect in d for d in content.defects), content.defects
    assert content.text_body == ""


async def test_nesting_within_the_cap_is_read_normally(store: Storage) -> None:
    content, _ = await _filed(store, nested_multiparts(MAX_DEPTH - 2))
    assert content.text_body == "deep inside"
    assert content.defects == []


@pytest.mark.parametrize("name", list(BROKEN))
async def test_broken_mail_is_delivered_as_it_came(store: Storage, name: str) -> None:
    content, _ = await _filed(store, BROKEN[name])
    assert "\x00" not in content.text_body


async def test_what_broken_mail_still_shows() -> None:
    parsed = parse_message(BROKEN["NUL and 8-bit in headers"])
    assert parsed.subject == "caf\ufffd menu"
    assert parsed.text == "body  with NUL\n"

    charset = parse_message(BROKEN["unknown and lying charsets"])
    assert charset.text.startswith("caf")
    assert any("x-no-such-charset" in d for d in charset.defects)

    absurd = parse_message(BROKEN["absurd header values"])
    assert absurd.message_id is None
    assert len(absurd.references) == 100
    assert absurd.references[0] == "<0@r.test>" and absurd.references[-1] == "<4999@r.test>"
    assert len(absurd.from_address) <= 320

    attachment = parse_message(BROKEN["broken base64"])
    assert [a.filename for a in attachment.attachments] == ["x.bin"]


async def test_a_parse_past_the_time_cap_keeps_the_headers(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smtp_in.processor, "PARSE_SECONDS", 0.0)
    content, copy = await _filed(store, many_parts(50))
    assert content.defects == ["parsing took over 0 s; headers only"]
    assert content.text_body == ""
    assert copy.subject == "50 parts"
    assert copy.from_address == "m@remote.test"
