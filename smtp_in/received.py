"""The trace fields we add to accepted mail: ``Received:`` at accept time (RFC 5321 4.4), and
the processors' results (``Authentication-Results:``, ``X-Spam-*``) right below it.

Layout of a stored message from another server::

    Received: from ... by us ...           <- added by the SMTP server before 250
    Authentication-Results: us; spf=...    <- added by the processor (added_fields)
    X-Spam-Status: ...                        (only when a content check is configured)
    ...the message exactly as the client sent it...

so everything after our own fields is byte for byte what arrived. The one exception is an
``Authentication-Results`` field that already names our host as its authserv-id: a sender
forged it, and RFC 8601 section 5 says to remove it, so we do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.utils import format_datetime

from storage.db.types import utcnow

__all__ = ["add_trace_fields", "received_header"]

_UNSAFE = re.compile(r"[^\x21-\x7e]")


def _clean(text: str, limit: int = 255) -> str:
    """Peer-supplied text (the HELO name) may hold anything; keep printable ASCII only."""
    return _UNSAFE.sub("?", text)[:limit] or "unknown"


def received_header(
    *, helo: str, peer_ip: str, hostname: str, protocol: str, queue_id: str, recipient: str | None
) -> bytes:
    lines = [
        f"Received: from {_clean(helo)} ([{_clean(peer_ip, 64)}])",
        f"\tby {_clean(hostname)} (postroom) with {protocol} id {queue_id}",
    ]
    when = format_datetime(utcnow())
    if recipient is not None:
        lines.append(f"\tfor <{_clean(recipient, 320)}>; {when}")
    else:
        lines[-1] += f"; {when}"
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_AUTHSERV = re.compile(rb"^[ \t\r\n]*(?:\([^()]*\)[ \t\r\n]*)*([^ \t\r\n;()]+)")


def add_trace_fields(raw: bytes, fields: Sequence[str], authserv_id: str) -> bytes:
    """``raw`` with ``fields`` (each CRLF-ended) inserted right after our Received: field.

    Forged ``Authentication-Results`` fields naming ``authserv_id`` are dropped from the
    header; nothing else changes.
    """
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    ends = [end for end in (crlf + 2 if crlf >= 0 else -1, lf + 1 if lf >= 0 else -1) if end > 0]
    cut = min(ends) if ends else len(raw)  # the header's last line ends here
    lines = raw[:cut].splitlines(keepends=True)
    ours = 0
    if lines and lines[0].lower().startswith(b"received:"):
        ours = 1
        while ours < len(lines) and lines[ours][:1] in (b" ", b"\t"):
            ours += 1
    kept: list[bytes] = []
    index = ours
    while index < len(lines) and lines[index] not in (b"\r\n", b"\n"):
        end = index + 1
        while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
            end += 1
        field = b"".join(lines[index:end])
        if not _forged_results(field, authserv_id):
            kept.append(field)
        index = end
    added = "".join(fields).encode("ascii")
    return b"".join(lines[:ours]) + added + b"".join(kept) + b"".join(lines[index:]) + raw[cut:]


def _forged_results(field: bytes, authserv_id: str) -> bool:
    name = _FIELD_NAME.match(field)
    if name is None or name[1].lower() != b"authentication-results":
        return False
    claimed = _AUTHSERV.match(field[name.end() :])
    return claimed is not None and claimed[1].lower() == authserv_id.lower().encode()
