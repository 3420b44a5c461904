"""The API files a send from what it composed, without parsing its own bytes again.

:func:`gateway.compose.compose` describes the message it wrote (``Composed.parsed``); the Sent
copy, its thread and its search document are made from that description. It must be exactly
what :func:`postroom.message.parse_message` reads from the bytes, which is what recipients
and every other copy of the message get, so each request here is checked against the parser.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.compose import Threading, compose
from gateway.send_schemas import SendRequest
from postroom.message import parse_message

LONG_WORD = "x" * 120
MANY_WORDS = " ".join(f"word{n}" for n in range(60))


def _file(name: str, content_type: str, data: bytes) -> dict[str, str]:
    return {
        "filename": name,
        "content_type": content_type,
        "content": base64.b64encode(data).decode(),
    }


REQUESTS: list[dict[str, Any]] = [
    {"to": ["bob@remote.test"], "subject": "Lunch?", "text": "Noon?"},
    {"to": ["bob@remote.test"], "subject": "", "text": ""},
    {
        "to": ["Bob.Smith@Remote.test", "carol@remote.test"],
        "cc": ["dave@remote.test"],
        "subject": "  spaced\tout   subject  ",
        "text": "one\r\ntwo\rthree\n\nfour   \n",
    },
    {"to": ["bob@remote.test"], "subject": MANY_WORDS, "text": MANY_WORDS * 5},
    {"to": ["bob@remote.test"], "subject": LONG_WORD, "text": LONG_WORD * 20},
    {
        "to": ["bob@remote.test"],
        "subject": "Café crème ☕ über",
        "text": "Ünïcödé ☕\nzweite Zeile",
    },
    {"to": ["bob@remote.test"], "subject": "日本語の件名 " * 8, "text": "本文です。" * 300},
    {"to": ["bob@remote.test"], "subject": "Re: hi", "html": "<p>Only <b>html</b></p>"},
    {"to": ["bob@remote.test"], "subject": "both", "text": "plain", "html": "<p>rich</p>\r\n"},
    {"to": ["bob@remote.test"], "subject": "nul", "text": "a\x00b", "html": "<i>c\x00</i>"},
    {"to": ["bob@remote.test"], "subject": "dots", "text": ".\n..\nFrom here\n>From\n."},
    {"to": ["bob@remote.test"], "subject": "trailing", "text": "ends without newline   "},
    {"to": ["bob@remote.test"], "subject": "ws", "text": "\n\n  \t\n"},
    {"to": ["bob@remote.test"], "subject": "long line", "text": "y" * 2000 + "\nshort"},
    {"to": ["bob@remote.test"], "subject": "long utf8", "text": "é" * 1500},
    {"to": ["bob@remote.test"], "subject": "seps", "text": "a\u2028b\x0bc\x0cd\x85e"},
    {
        "to": ["bob@remote.test"],
        "subject": "files",
        "text": "see attached",
        "html": "<p>see</p>",
        "attachments": [
            _file("numbers.csv", "text/csv", b"a,b\n1,2\n"),
            _file("notes.txt", "text/plain", "héllo\r\n".encode()),
            _file("page.html", "text/html", b"<p>x</p>"),
            _file("résumé final.pdf", "application/pdf", b"%PDF-1.4 \x00\xff"),
            _file('odd "name";.bin', "application/octet-stream", b""),
            _file("   ", "image/png", b"\x89PNG"),
            _file("a" * 200 + ".txt", "Application/X-Thing", b"z" * 3000),
            _file("日本語.txt", "text/plain", "日本".encode()),
        ],
    },
    {
        "to": ["bob@remote.test"],
        "subject": "html only with files",
        "html": "<p>hi</p>",
        "attachments": [_file("x.txt", "text/plain", b"attached text")],
    },
    {
        "to": ["bob@remote.test"],
        "bcc": ["secret@remote.test"],
        "subject": "x",
        "text": "y",
        "reply_to": ["replies@remote.test"],
        "headers": {"X-Campaign": "q3", "X-Long": MANY_WORDS},
    },
]


@pytest.mark.parametrize("body", REQUESTS, ids=lambda body: str(body.get("subject"))[:20])
@pytest.mark.parametrize(
    "threading",
    [
        None,
        Threading("<parent@remote.test>"),
        Threading("<p@x.test>", [f"<r{n}.{LONG_WORD}@x.test>" for n in range(25)]),
    ],
    ids=["new", "reply", "long-thread"],
)
def test_description_is_what_parsing_reads(
    body: dict[str, Any], threading: Threading | None
) -> None:
    composed = compose(
        SendRequest.model_validate(body),
        sender="ann@send.test",
        hostname="mail.send.test",
        max_size=10 * 1024 * 1024,
        threading=threading,
        date=datetime(2030, 1, 31, 9, 30, 15, 123456, tzinfo=UTC),
    )
    assert composed.parsed is not None
    assert composed.parsed == parse_message(composed.raw)


def test_a_draft_without_body_or_recipients() -> None:
    composed = compose(
        SendRequest.model_validate({}),
        sender="ann@send.test",
        hostname="h.test",
        max_size=1 << 20,
        draft=True,
    )
    assert composed.parsed == parse_message(composed.raw)


@pytest.mark.parametrize(
    ("body", "threading"),
    [
        ({"to": ["bob@remote.test"], "subject": "=?utf-8?q?looks_encoded?=", "text": "x"}, None),
        ({"to": ["bøb@remote.test"], "subject": "x", "text": "x"}, None),
        ({"to": ["bob@rémote.test"], "subject": "x", "text": "x"}, None),
        ({"to": ["bob@remote.test"], "subject": "x", "text": "x"}, Threading("<=?x?=@y.test>")),
    ],
)
def test_unusual_headers_are_left_to_the_parser(
    body: dict[str, Any], threading: Threading | None
) -> None:
    """Where the bytes may read back differently from what was written, nothing is guessed."""
    composed = compose(
        SendRequest.model_validate(body),
        sender="ann@send.test",
        hostname="h.test",
        max_size=1 << 20,
        threading=threading,
    )
    assert composed.parsed is None
