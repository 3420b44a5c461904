"""Identifiers for rows that users see.

Ids are UUIDv7-shaped: 48 bits of milliseconds then 74 random bits, as 32 hex digits. They sort
by creation time (so ``ORDER BY id`` is a stable tie-breaker for "newest first"), they are unique
across processes without coordination, and they cannot be guessed from a neighbour's id.
"""

from __future__ import annotations

import re
import secrets
import time

__all__ = ["ID_PATTERN", "is_id", "new_id"]

ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    millis = time.time_ns() // 1_000_000
    rand = secrets.randbits(74)
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= (rand >> 62) << 64  # 12 random bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)
    return f"{value:032x}"


def is_id(text: str) -> bool:
    return bool(ID_PATTERN.match(text))
