"""One SMTP transaction: hand one message to the first mail host that takes the connection.

The outcome is a :class:`Reply` per recipient, so that a server accepting one recipient and
refusing another is recorded exactly as it answered. A host that fails before the transaction
starts (no connection, a 4xx/5xx greeting, a refused EHLO) is skipped for the next one, as
RFC 5321 5.1 asks; once MAIL FROM is sent, the answers of that host are the result.

Connections (reuse, per-host caps, TLS modes, AUTH) are :mod:`smtp_out.connections`' job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiosmtplib

from smtp_out.connections import Connections, HostUnavailable, Lease, SessionOptions
from smtp_out.mx import Target

__all__ = ["Envelope", "Reply", "deliver"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reply:
    """An SMTP reply, or one we make up in the same form for a failure on our side."""

    code: int
    text: str

    @property
    def status(self) -> str:
        """The recipient status this reply leads to."""
        if 200 <= self.code < 300:
            return "delivered"
        if 500 <= self.code < 600:
            return "bounced"
        return "deferred"

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: Sequence[str]
    message: bytes


async def deliver(
    targets: Sequence[Target], envelope: Envelope, connections: Connections
) -> dict[str, Reply]:
    """Each recipient's reply from the first host that started a transaction."""
    failures: list[str] = []
    for target in targets:
        try:
            async with connections.lease(target) as lease:
                return await _transaction(lease, envelope, connections.options)
        except HostUnavailable as exc:
            log.info("%s: %s; trying the next mail host", target, exc)
            failures.append(f"{target}: {exc}")
    reason = "; ".join(failures) if failures else "no mail host to try"
    return dict.fromkeys(envelope.recipients, Reply(451, f"4.4.1 {reason}"))


async def _transaction(
    lease: Lease, envelope: Envelope, options: SessionOptions
) -> dict[str, Reply]:
    """MAIL, one RCPT per recipient, DATA once if anyone was accepted."""
    client, target = lease.client, lease.target
    replies: dict[str, Reply] = {}
    recipients = list(envelope.recipients)
    limit = _size_limit(client)
    if limit is not None and len(envelope.message) > limit:
        too_big = Reply(
            552,
            f"5.3.4 the message is {len(envelope.message)} bytes; {target} "
            f"accepts at most {limit} (RFC 1870)",
        )
        return dict.fromkeys(recipients, too_big)
    utf8 = not (envelope.sender.isascii() and all(r.isascii() for r in recipients))
    if utf8 and not client.supports_extension("smtputf8"):
        refused = Reply(553, f"5.6.7 {target} does not support internationalized addresses")
        if not envelope.sender.isascii():
            return dict.fromkeys(recipients, refused)
        replies.update((r, refused) for r in recipients if not r.isascii())
        recipients = [r for r in recipients if r.isascii()]
        utf8 = False
    encoding = "utf-8" if utf8 else "ascii"

    accepted: list[str] = []
    try:
        try:
            await client.mail(
                envelope.sender, options=_mail_options(client, envelope, utf8), encoding=encoding
            )
        except aiosmtplib.SMTPResponseException as exc:
            replies.update(dict.fromkeys(recipients, Reply(exc.code, exc.message)))
            return replies
        lease.clean = False  # a transaction is open until DATA's 250 ends it
        for recipient in recipients:
            try:
                await client.rcpt(recipient, encoding=encoding)
                accepted.append(recipient)
            except aiosmtplib.SMTPResponseException as exc:
                replies[recipient] = Reply(exc.code, exc.message)
        if not accepted:
            return replies
        try:
            response = await client.data(envelope.message, timeout=options.data_timeout)
            reply = Reply(response.code, response.message)
            lease.clean = True
        except aiosmtplib.SMTPResponseException as exc:
            reply = Reply(exc.code, exc.message)
        replies.update(dict.fromkeys(accepted, reply))
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Lost the connection or timed out mid-transaction: whoever has no answer yet waits,
        # and the connection, in an unknown state, is not reused.
        lease.discard()
        lost = Reply(451, f"4.4.2 {target}: {exc}")
        replies.update((r, lost) for r in recipients if r not in replies)
    return replies


def _size_limit(client: aiosmtplib.SMTP) -> int | None:
    """The largest message the server says it takes (SIZE, RFC 1870); None when unsaid."""
    value = client.esmtp_extensions.get("size", "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else None


def _mail_options(client: aiosmtplib.SMTP, envelope: Envelope, utf8: bool) -> list[str]:
    options: list[str] = []
    if client.supports_extension("size"):
        options.append(f"SIZE={len(envelope.message)}")
    if not envelope.message.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if utf8:
        options.append("SMTPUTF8")
    return options
