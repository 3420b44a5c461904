"""Enhanced status codes (RFC 3463) on every reply, aiosmtpd's built-in ones included.

Advertising ENHANCEDSTATUSCODES promises a code on every 2xx, 4xx and 5xx reply except the
greeting and the replies to HELO and EHLO (RFC 2034 section 3). Our handlers write theirs; the
replies aiosmtpd writes itself ("250 OK", "503 Error: need RCPT command") have none, so they get
the code their basic reply code stands for, and clients can tell a syntax error from a policy
refusal without parsing prose.
"""

from __future__ import annotations

import re

__all__ = ["one_line", "with_enhanced_code"]

_HAS_CODE = re.compile(rb"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_REPLY = re.compile(rb"^([245])(\d\d)([ -])")

# The closest RFC 3463 code for each basic reply aiosmtpd sends without one.
_BY_REPLY: dict[bytes, bytes] = {
    b"421": b"4.3.0",
    b"451": b"4.3.0",
    b"454": b"4.7.0",
    b"500": b"5.5.2",
    b"501": b"5.5.4",
    b"502": b"5.5.1",
    b"503": b"5.5.1",
    b"504": b"5.5.4",
    b"530": b"5.7.0",
    b"535": b"5.7.8",
    b"552": b"5.3.4",
    b"553": b"5.1.3",
    b"554": b"5.7.0",
    b"555": b"5.5.4",
}
_BY_CLASS = {b"2": b"2.0.0", b"4": b"4.0.0", b"5": b"5.0.0"}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


def with_enhanced_code(reply: bytes) -> bytes:
    """``reply`` with an enhanced code after the basic one, unless it has one or needs none."""
    match = _REPLY.match(reply)
    if match is None or reply.startswith(b"220") or _HAS_CODE.match(reply):
        return reply
    basic = reply[:3]
    code = _BY_REPLY.get(basic, _BY_CLASS[match.group(1)])
    return reply[:4] + code + b" " + reply[4:].lstrip()


def one_line(text: str, limit: int = 400) -> str:
    """Text from elsewhere (an error message) made safe to put in a reply line."""
    return _UNSAFE.sub(" ", text).strip()[:limit]
