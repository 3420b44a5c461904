"""The plain writer gives the very bytes the ``email`` package gives, or stands aside.

:func:`gateway.plain_mime.plain_bytes` writes the common send (plain headers, text and/or html,
no attachments) without ``EmailMessage``; every message here is written both ways and must be
byte for byte the same (multipart boundaries are random in both, so they are named alike
first). Headers the plain writer cannot be sure of must send the message the slow way.
"""

from __future__ import annotations

import re

import pytest

from gateway.compose import email_bytes
from gateway.plain_mime import plain_bytes

BASE = [
    ("From", "ann@send.test"),
    ("To", "bob@remote.test, Carol.O'Neil+tag@remote.test"),
    ("Subject", "Lunch?"),
    ("Date", "Thu, 31 Jan 2030 09:30:15 +0000"),
    ("Message-ID", "<179549011310.3583.17803410583892167219@mail.send.test>"),
]
REPLY = [
    ("In-Reply-To", "<parent@remote.test>"),
    ("References", "<root@x.test> <parent@remote.test>"),
]
EXTRA = [("X-Campaign", "q3"), ("X-Empty-Ish", "-")]
QUICK = "The quick brown fox jumps over the lazy dog. "

BODIES = [
    "Noon?",
    "",
    "one\r\ntwo\rthree\n\nfour   \n",
    QUICK * 22,
    (QUICK * 3 + "\n") * 30,
    "x" * 78 + "\n" + "y" * 79,
    "Ünïcödé ☕\nzweite Zeile",
    "é" * 1500,
    "本文です。" * 300,
    ".\n..\nFrom here\n>From\n.",
    "\n\n  \t\n",
    "a\x00b\x7f\x0bc\x0cd",
    "=3D looks encoded =\n=20\n",
    "ends without newline   ",
    "--===============0000000000000000001==\nlooks like a boundary",
]


def _same_boundary(raw: bytes) -> bytes:
    return re.sub(rb"===============\d+==(\.\d+)?", b"BOUNDARY", raw)


@pytest.mark.parametrize(
    "headers", [BASE, BASE + REPLY + EXTRA, [*BASE[:2], ("Subject", ""), *BASE[3:]]]
)
@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("kind", ["text", "html", "both"])
def test_plain_writer_matches_the_email_package(
    headers: list[tuple[str, str]], body: str, kind: str
) -> None:
    text = body if kind != "html" else None
    html = f"<p>{body}</p>" if kind != "text" else None
    fast = plain_bytes(headers, text, html)
    assert fast is not None
    assert _same_boundary(fast) == _same_boundary(email_bytes(headers, text, html, []))


def test_a_draft_without_any_body() -> None:
    fast = plain_bytes(BASE, None, None)
    assert fast is not None and fast == email_bytes(BASE, None, None, [])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Subject", "x" * 80),  # folded
        ("Subject", "Café"),  # encoded word
        ("Subject", "=?utf-8?q?hi?="),  # reads as an encoded word
        ("Subject", "two  spaces"),
        ("Subject", " leading"),
        ("Subject", "tab\there"),
        ("To", "bøb@remote.test"),
        ("To", "bob@rémote.test"),
        ("To", '"quoted local"@remote.test'),
        ("To", ", ".join(f"user{n}@remote.test" for n in range(8))),  # folded
        ("X-Tag", ""),
        ("References", " ".join(f"<id{n}@remote.test>" for n in range(5))),  # folded
    ],
)
def test_unsure_headers_go_the_slow_way(name: str, value: str) -> None:
    headers = [(n, v) for n, v in BASE if n != name] + [(name, value)]
    assert plain_bytes(headers, "text", None) is None
