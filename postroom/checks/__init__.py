"""Spam and virus checks of message content, behind one Protocol.

Inbound processing and outbound delivery ask the same question of a message ("is this spam,
is it infected?"), so both go through :class:`ContentCheck` and neither knows which checker
answers. ``postroom.checks.registry.open_content_check`` picks the implementation from
``POSTROOM_CONTENT_CHECK_URL`` (unset: the no-op check; ``spamd://host:port``: SpamAssassin).

A checker that cannot decide raises :class:`postroom.errors.ContentCheckUnavailable` instead
of returning a clean verdict, so callers wait and ask again rather than pass mail unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["ContentCheck", "Verdict"]


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What a checker concluded about one message.

    ``score`` and ``threshold`` are the checker's own numbers (SpamAssassin: the message's
    score and the score at which it counts as spam); None when the checker has no scores.
    ``reason`` is written for the user who sent or received the message, who sees it.
    """

    spam: bool
    score: float | None
    threshold: float | None
    infected: bool = False
    reason: str
    rules: tuple[str, ...] = ()
    """Names of the rules that matched, when the checker reports them (e.g. ``GTUBE``)."""

    @property
    def clean(self) -> bool:
        """Neither spam nor infected: the message may go on."""
        return not (self.spam or self.infected)


class ContentCheck(Protocol):
    """A spam/virus checker; one instance serves many concurrent checks."""

    async def check(self, raw: bytes) -> Verdict:
        """The verdict on one raw RFC 5322 message.

        Raises ContentCheckUnavailable when no verdict could be had (checker down, timed
        out, unintelligible answer); the caller should try again later.
        """
        ...

    async def close(self) -> None:
        """Release whatever the checker holds (connections); it is not used afterwards."""
        ...
