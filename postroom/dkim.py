"""DKIM keys, the DNS record that publishes them, and signing (RFC 6376).

Kept in the core, free of storage and services, so that the command line (which makes keys and
prints records) and smtp-out (which signs) share one definition of the key format and of what
gets signed. Everything here is blocking CPU work: async callers run it in a thread.

Keys are RSA 2048, the size every receiver accepts (RFC 8301 requires at least 1024 and
recommends 2048; larger keys do not fit a single DNS string and some resolvers stumble on them).
The private key is kept as traditional PKCS#1 PEM, the form every dkimpy release parses.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postroom.errors import InvalidInput

__all__ = [
    "KEY_BITS",
    "SIGNED_HEADERS",
    "DkimRecord",
    "check_selector",
    "dns_record",
    "generate_private_key",
    "normalize_line_endings",
    "public_key_value",
    "sign",
]

KEY_BITS = 2048

SIGNED_HEADERS = (
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
)
"""What a signature covers: what a reader sees and what threads the message. Trace headers
(Received, Return-Path) are left out because relays add them; headers named here but absent
from a message are signed as absent, so nobody can add them later (RFC 6376 5.4)."""

TXT_STRING_LIMIT = 255
"""One DNS character-string holds at most 255 octets (RFC 1035 3.3); longer TXT values are
published as several strings, which receivers join back together (RFC 6376 3.6.2.2)."""

_LINE_ENDING = re.compile(rb"\r\n|\n|\r(?!\n)")
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_SELECTOR = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


@dataclass(frozen=True)
class DkimRecord:
    """The TXT record receivers look up to check our signatures."""

    name: str
    """``<selector>._domainkey.<domain>``, without the trailing dot."""
    value: str
    """``v=DKIM1; k=rsa; p=<base64 DER SubjectPublicKeyInfo>``"""

    @property
    def strings(self) -> list[str]:
        """The value cut into character-strings a DNS TXT record can hold."""
        return [
            self.value[start : start + TXT_STRING_LIMIT]
            for start in range(0, len(self.value), TXT_STRING_LIMIT)
        ]

    def zone_line(self) -> str:
        """The record as a zone-file line, ready to paste into a DNS provider's form."""
        quoted = " ".join(f'"{chunk}"' for chunk in self.strings)
        return f"{self.name}. IN TXT {quoted}"


def check_selector(selector: str) -> str:
    """The selector lowercased, or InvalidInput: it becomes part of a DNS name (RFC 6376 3.1)."""
    normalized = selector.strip().lower()
    if len(normalized) > 63 or not _SELECTOR.match(normalized):
        raise InvalidInput(
            f"{selector!r} is not a valid DKIM selector (letters, digits and hyphens, "
            "like 'postroom' or 'mail2025')",
            field="dkim_selector",
        )
    return normalized


def generate_private_key() -> str:
    """A new RSA key as PEM text (PKCS#1), the form stored on the domain row."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.TraditionalOpenSSL,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")


def public_key_value(private_key_pem: str) -> str:
    """The ``v=DKIM1; k=rsa; p=...`` value for the public half of ``private_key_pem``."""
    key = serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("a DKIM key here is always RSA")
    der = key.public_key().public_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def dns_record(domain: str, selector: str, private_key_pem: str) -> DkimRecord:
    """The record to publish so that signatures by ``selector`` for ``domain`` verify."""
    return DkimRecord(f"{selector}._domainkey.{domain}", public_key_value(private_key_pem))


def normalize_line_endings(raw: bytes) -> bytes:
    """Every line ending as CRLF, and a final one, exactly as the SMTP client sends it.

    The signature covers the bytes on the wire. The SMTP client turns a bare LF or bare CR into
    CRLF; dkimpy only understands LF and CRLF, so a bare CR signed as it is would make the
    signature fail at every receiver.
    """
    normalized = _LINE_ENDING.sub(b"\r\n", raw)
    return normalized if normalized.endswith(b"\r\n") else normalized + b"\r\n"


def sign(raw: bytes, *, domain: str, selector: str, private_key_pem: str) -> bytes:
    """``raw`` with normalized line endings and a DKIM-Signature header in front.

    Relaxed/relaxed canonicalization, so that relays which refold headers or change whitespace
    do not break the signature. Raises ``dkim.DKIMException`` if the message or key cannot be
    signed (a header line that is no header, a damaged key).
    """
    message = normalize_line_endings(raw)
    signature: bytes = dkim.sign(
        message,
        selector.encode("ascii"),
        domain.encode("ascii"),
        private_key_pem.encode("ascii"),
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[name.encode("ascii") for name in SIGNED_HEADERS],
    )
    return signature + message
