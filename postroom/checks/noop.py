"""The check used when none is configured: every message is clean.

It exists so that callers always have a checker to call, rather than a ``None`` to test for
at every place a message passes; ``postroom up`` on a laptop needs no SpamAssassin.
"""

from __future__ import annotations

from postroom.checks import Verdict

__all__ = ["NoopCheck"]

NOT_CHECKED = Verdict(
    spam=False, score=None, threshold=None, reason="not checked (no content check configured)"
)


class NoopCheck:
    """A :class:`postroom.checks.ContentCheck` that passes everything."""

    async def check(self, raw: bytes) -> Verdict:
        return NOT_CHECKED

    async def close(self) -> None:
        return None
