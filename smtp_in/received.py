"""The ``Received:`` trace header we prepend to every accepted message (RFC 5321 4.4)."""

from __future__ import annotations

import re
from email.utils import format_datetime

from storage.db.types import utcnow

__all__ = ["received_header"]

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
