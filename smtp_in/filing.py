"""Which mailbox arriving mail goes to, and the trace fields that say why.

Mail is never dropped here: the worst verdict files it in Junk. Junk takes mail that the
content check calls spam or infected, and mail that fails DMARC for a domain whose policy
asks receivers to reject or quarantine what fails (RFC 7489 6.3: rejecting at SMTP time is
the sender's wish, delivering to a spam folder is the receiver's allowed choice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from postroom.checks import Verdict
from smtp_in.authentication import AuthenticationResults

__all__ = ["Filing", "decide", "spam_fields"]

MAX_RULES_SHOWN = 30
_UNSAFE = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True)
class Filing:
    role: str
    """The mailbox role: ``inbox`` or ``junk``."""
    reasons: tuple[str, ...] = ()
    trace_fields: tuple[str, ...] = ()
    """Header fields, CRLF-ended, to add below our Received: line."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """What the content metadata keeps: ``authentication`` and ``spam`` summaries."""


def decide(auth: AuthenticationResults | None, verdict: Verdict | None) -> Filing:
    """File by the authentication results and the content verdict (None: not checked)."""
    reasons: list[str] = []
    fields: list[str] = []
    metadata: dict[str, Any] = {}
    if auth is not None:
        fields.append(auth.header)
        metadata["authentication"] = auth.summary()
        if auth.dmarc_says_junk:
            reasons.append(
                f"DMARC {auth.dmarc.result} for {auth.dmarc.from_domain} "
                f"(policy {auth.dmarc.policy})"
            )
    if verdict is not None and verdict.score is not None:
        fields.extend(spam_fields(verdict))
        metadata["spam"] = {
            "spam": verdict.spam,
            "infected": verdict.infected,
            "score": verdict.score,
            "threshold": verdict.threshold,
            "rules": list(verdict.rules),
            "reason": verdict.reason,
        }
    if verdict is not None and not verdict.clean:
        reasons.append(verdict.reason)
    return Filing(
        role="junk" if reasons else "inbox",
        reasons=tuple(reasons),
        trace_fields=tuple(fields),
        metadata=metadata,
    )


def spam_fields(verdict: Verdict) -> list[str]:
    """SpamAssassin's own field names, which mail clients already understand."""
    rules = ",".join(_UNSAFE.sub("", r) for r in verdict.rules[:MAX_RULES_SHOWN]) or "none"
    status = (
        f"X-Spam-Status: {'Yes' if verdict.spam else 'No'}, score={verdict.score:.1f} "
        f"required={verdict.threshold if verdict.threshold is not None else 0:.1f}\r\n"
        f"\ttests={rules}\r\n"
    )
    fields = [status]
    if verdict.spam:
        fields.append("X-Spam-Flag: YES\r\n")
    return fields
