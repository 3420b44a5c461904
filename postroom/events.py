"""Events that services publish after a change is committed.

An event is what the per-user change log recorded, so its ``seq`` lets a client that missed some
ask for them again. Events travel over the bus as JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Event", "user_channel"]


@dataclass(frozen=True)
class Event:
    type: str
    user_id: str
    seq: int
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        raw = json.loads(text)
        return cls(type=raw["type"], user_id=raw["user_id"], seq=raw["seq"], data=raw["data"])


def user_channel(user_id: str) -> str:
    """The bus channel carrying one user's events."""
    return f"user.{user_id}"
