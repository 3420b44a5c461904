"""Reading the DATA payload strictly: CRLF line endings only, bounded lines, bounded size.

Only ``<CRLF>.<CRLF>`` ends the data, and a bare CR or a bare LF anywhere in it refuses the
whole message. That closes SMTP smuggling (CVE-2023-51764 and its kin): a sender hiding a second
message behind ``<LF>.<LF>`` or ``<CR>.<CR>`` gets one 5xx for the lot, whatever a relay on the
way made of those sequences, and nothing is stored. Data over the size or line limit is drained
up to the terminating dot and dropped as it arrives, so memory stays bounded, and only then
answered (RFC 5321 4.2.5), keeping client and server in step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_LINE", "DataResult", "read_data"]

MAX_LINE = 1000
"""Octets in a text line including CRLF, not counting a stuffed dot (RFC 5321 4.5.3.1.6)."""

_CRLF = b"\r\n"
_END = b".\r\n"


@dataclass(frozen=True)
class DataResult:
    content: bytes
    """The message with dot-stuffing undone; empty when refused."""
    refusal: str | None = None
    """The reply refusing the message, or ``None`` when it may be handed on."""


async def read_data(
    reader: asyncio.StreamReader, *, max_size: int, on_line: Callable[[], None]
) -> DataResult:
    """Read up to the terminating dot; ``on_line`` runs on each line (to restart a timeout).

    The reader's limit must be at least :data:`MAX_LINE` + 1 (the stuffed dot).
    """
    lines: list[bytes] = []
    size = 0
    refusal: str | None = None
    continuing = False  # the previous read ended inside an over-long line
    while True:
        try:
            line = await reader.readuntil(_CRLF)
        except asyncio.LimitOverrunError as overrun:
            await reader.read(overrun.consumed)
            continuing = True
            lines.clear()
            refusal = refusal or _too_long()
            on_line()
            continue
        except asyncio.IncompleteReadError as eof:
            raise ConnectionResetError("the client closed the connection during DATA") from eof
        on_line()
        if continuing:
            continuing = False
            continue
        if line == _END:
            break
        if line.startswith(b"."):
            line = line[1:]
        end = len(line) - 2
        size += len(line)
        if refusal is not None:
            continue
        if line.find(b"\n", 0, end) >= 0 or line.find(b"\r", 0, end) >= 0:
            refusal = (
                "554 5.6.0 Bare CR or LF in the message: every line must end in CRLF "
                "(RFC 5321 2.3.8); nothing was stored"
            )
        elif len(line) > MAX_LINE:
            refusal = _too_long()
        elif size > max_size:
            refusal = f"552 5.3.4 The message exceeds the maximum size of {max_size} octets"
        else:
            lines.append(line)
            continue
        lines.clear()
    if refusal is not None:
        return DataResult(b"", refusal)
    return DataResult(b"".join(lines))


def _too_long() -> str:
    return (
        f"500 5.5.2 Line too long: at most {MAX_LINE} octets with CRLF (RFC 5321 4.5.3.1.6); "
        "nothing was stored"
    )
