"""DKIM keys, records and signatures (issue 4, point 9), without DNS or a database.

Verification here is dkimpy's, fed the record we would publish; the smtp-out tests do the
same through a real DNS server.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postroom.dkim import (
    DkimRecord,
    check_selector,
    dns_record,
    generate_private_key,
    normalize_line_endings,
    sign,
)
from postroom.errors import InvalidInput

MESSAGE = (
    b"From: Ann <ann@example.test>\r\n"
    b"To: dave@remote.test\r\n"
    b"Subject: Lunch?\r\n"
    b"Date: Mon, 02 Jun 2025 12:00:00 +0000\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Noon at the usual place?\r\n"
)
WIRE_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
"""What the SMTP client (aiosmtplib) does to line endings before DATA."""


@pytest.fixture(scope="module")
def key() -> str:
    return generate_private_key()


def _dns(record: DkimRecord) -> Callable[..., bytes | None]:
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return record.value.encode() if name.decode().rstrip(".") == record.name else None

    return lookup


def _verifies(message: bytes, record: DkimRecord) -> bool:
    return bool(dkim.verify(message, dnsfunc=_dns(record)))


def _on_the_wire(message: bytes) -> bytes:
    return WIRE_LINE_ENDINGS.sub(b"\r\n", message)


def test_the_key_is_rsa_2048_and_the_record_publishes_its_public_half(key: str) -> None:
    private = serialization.load_pem_private_key(key.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048

    record = dns_record("example.test", "postroom", key)

    assert record.name == "postroom._domainkey.example.test"
    prefix, _, encoded = record.value.partition("p=")
    assert prefix == "v=DKIM1; k=rsa; "
    public = serialization.load_der_public_key(base64.b64decode(encoded, validate=True))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()


def test_the_zone_line_splits_the_value_into_dns_strings(key: str) -> None:
    record = dns_record("example.test", "postroom", key)
    assert len(record.value) > 255, "a 2048-bit key never fits one DNS string"

    line = record.zone_line()

    match = re.fullmatch(r'postroom\._domainkey\.example\.test\. IN TXT ((?:"[^"]*" ?)+)', line)
    assert match is not None, line
    strings = re.findall(r'"([^"]*)"', match.group(1))
    assert len(strings) == 2
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == record.value
    assert strings == record.strings


def test_a_signed_message_verifies_against_the_record(key: str) -> None:
    signed = sign(MESSAGE, domain="example.test", selector="postroom", private_key_pem=key)

    assert signed.startswith(b"DKIM-Signature: ")
    assert signed.endswith(MESSAGE), "the message follows the signature, unchanged"
    assert _verifies(signed, dns_record("example.test", "postroom", key))
    header = signed[: signed.index(b"From:")].decode()
    assert "c=relaxed/relaxed" in header
    assert "d=example.test" in header and "s=postroom" in header
    signed_headers = re.search(r"h=([^;]*);", header)
    assert signed_headers is not None
    assert [h.strip() for h in signed_headers.group(1).split(":")] == [
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
    ]


def test_changes_on_the_way_break_the_signature_and_refolding_does_not(key: str) -> None:
    record = dns_record("example.test", "postroom", key)
    signed = sign(MESSAGE, domain="example.test", selector="postroom", private_key_pem=key)

    assert not _verifies(signed.replace(b"Noon", b"Nine"), record)
    assert not _verifies(signed.replace(b"Subject: Lunch?", b"Subject: Dinner?"), record)
    # A relay that adds a trace header or changes whitespace is what relaxed is for.
    relayed = b"Received: from relay.test\r\n" + signed.replace(
        b"Subject: Lunch?", b"Subject:   Lunch?"
    )
    assert _verifies(relayed, record)
    # A wrong key in DNS (say, after a key change not yet published) fails.
    assert not _verifies(signed, dns_record("example.test", "postroom", generate_private_key()))


@pytest.mark.parametrize(
    "ending",
    [b"\n", b"\r", b"\r\n"],
    ids=["bare LF", "bare CR", "CRLF"],
)
def test_any_line_ending_is_signed_as_it_goes_on_the_wire(key: str, ending: bytes) -> None:
    raw = MESSAGE.replace(b"\r\n", ending)

    signed = sign(raw, domain="example.test", selector="postroom", private_key_pem=key)

    assert re.search(rb"\r(?!\n)|(?<!\r)\n", signed) is None, "only CRLF is left"
    assert _on_the_wire(signed) == signed
    assert _verifies(signed, dns_record("example.test", "postroom", key))


def test_signing_a_bare_cr_unnormalised_would_fail_at_the_receiver(key: str) -> None:
    """Why sign() normalizes: dkimpy reads a bare CR as part of a line, the wire does not."""
    raw = MESSAGE.replace(b"Noon at", b"Noon\rat")
    record = dns_record("example.test", "postroom", key)
    header = dkim.sign(
        raw, b"postroom", b"example.test", key.encode(), canonicalize=(b"relaxed", b"relaxed")
    )
    assert not _verifies(_on_the_wire(header + raw), record)

    signed = sign(raw, domain="example.test", selector="postroom", private_key_pem=key)
    assert _verifies(_on_the_wire(signed), record)


def test_normalize_line_endings_ends_with_crlf() -> None:
    assert normalize_line_endings(b"a\nb\rc\r\nd") == b"a\r\nb\r\nc\r\nd\r\n"
    assert normalize_line_endings(b"a\r\n") == b"a\r\n"
    assert normalize_line_endings(b"a\n\r\n\r") == b"a\r\n\r\n\r\n"


@pytest.mark.parametrize("selector", ["postroom", "Mail2025", "s1.eu", "k-1"])
def test_selectors_that_make_dns_labels(selector: str) -> None:
    assert check_selector(selector) == selector.lower()


@pytest.mark.parametrize("selector", ["", "bad selector", "-x", "x-", "a..b", "é", "x" * 64])
def test_selectors_that_do_not(selector: str) -> None:
    with pytest.raises(InvalidInput, match="is not a valid DKIM selector"):
        check_selector(selector)
