"""Validation of mail addresses, domain names and header values at every boundary.

Python 3.11's ``email`` package accepts addresses and header values that newer releases refuse
(``parseaddr`` leniency, newlines in header values), so nothing a user gives us reaches a
message, a database row or an SMTP command without passing through here first.
"""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, validate_email

from postroom.errors import InvalidAddress, InvalidHeader, InvalidInput

__all__ = [
    "check_header_value",
    "normalize_address",
    "normalize_domain",
]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def normalize_address(address: str, *, field: str | None = None) -> str:
    """Return ``address`` in the form we store (domain lowercased and IDNA-normalised).

    The local part keeps its case, as RFC 5321 says, but lookups compare lowercased addresses.
    """
    if _CONTROL.search(address):
        raise InvalidAddress(
            f"{address!r} contains a control character (CR, LF or similar)", field=field
        )
    try:
        return _validated(address)
    except EmailNotValidError as exc:
        raise InvalidAddress(
            f"{address!r} is not a valid mail address: {exc}", field=field
        ) from exc


@functools.lru_cache(maxsize=8192)
def _validated(address: str) -> str:
    """The stored form of a valid ``address``, remembered: people write to the same addresses
    again and again, and the validator costs more than the rest of composing a message.
    (Only answers are remembered; an invalid address is checked afresh each time.)"""
    # test_environment only lifts the ban on ``.test`` names (RFC 6761), which private
    # installs and our own test domains use; deliverability is never checked here.
    result = validate_email(
        address, check_deliverability=False, allow_smtputf8=True, test_environment=True
    )
    return f"{result.local_part}@{result.domain.lower()}"


def normalize_domain(name: str, *, field: str | None = None) -> str:
    """Return a domain name lowercased and in its A-label (IDNA) form."""
    candidate = name.strip().rstrip(".").lower()
    try:
        ascii_name = candidate.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidInput(f"{name!r} is not a valid domain name", field=field) from exc
    labels = ascii_name.split(".")
    if len(labels) < 2 or len(ascii_name) > 253 or not all(_LABEL.match(x) for x in labels):
        raise InvalidInput(
            f"{name!r} is not a valid domain name (expected something like example.com)",
            field=field,
        )
    return ascii_name


def check_header_value(value: str, *, field: str | None = None) -> str:
    """Refuse a header value that carries CR, LF or other control characters."""
    if _CONTROL.search(value):
        raise InvalidHeader(
            "header values must not contain CR, LF or other control characters", field=field
        )
    return value
