"""One SMTP transaction: hand one message to the first mail host that takes the connection.

The outcome is a :class:`Reply` per recipient, so that a server accepting one recipient and
refusing another is recorded exactly as it answered. A host that fails before the transaction
starts (no connection, a 4xx/5xx greeting, a refused EHLO) is skipped for the next one, as
RFC 5321 5.1 asks; once MAIL FROM is sent, the answers of that host are the result.

TLS is opportunistic (RFC 3207, as most MTAs do it): used when offered, certificates not
checked, because refusing an unverifiable certificate would only push the mail to plaintext.
A host whose STARTTLS fails is tried once more without it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

import aiosmtplib

from smtp_out.mx import Target

__all__ = ["Envelope", "Reply", "SessionOptions", "deliver"]

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


@dataclass(frozen=True)
class SessionOptions:
    """How to talk to peers. Timeouts follow Postfix's defaults, themselves after RFC 5321."""

    port: int
    helo: str
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    quit_timeout: float = 10.0


class _HostUnavailable(Exception):
    """The host could not start a transaction; nothing was sent, the next host may work."""


class _TLSFailed(_HostUnavailable):
    """STARTTLS was offered but did not work; the same host may work without it."""


async def deliver(
    targets: Sequence[Target], envelope: Envelope, options: SessionOptions
) -> dict[str, Reply]:
    """Each recipient's reply from the first host that started a transaction."""
    failures: list[str] = []
    for target in targets:
        try:
            try:
                return await _session(target, envelope, options, tls=True)
            except _TLSFailed as exc:
                log.info("%s: STARTTLS failed (%s); trying without TLS", target, exc)
                return await _session(target, envelope, options, tls=False)
        except _HostUnavailable as exc:
            log.info("%s: %s; trying the next mail host", target, exc)
            failures.append(f"{target}: {exc}")
    reason = failures[-1] if failures else "no mail host to try"
    return dict.fromkeys(envelope.recipients, Reply(451, f"4.4.1 {reason}"))


async def _session(
    target: Target, envelope: Envelope, options: SessionOptions, *, tls: bool
) -> dict[str, Reply]:
    client = aiosmtplib.SMTP(
        hostname=target.address,
        port=options.port,
        local_hostname=options.helo,
        timeout=options.command_timeout,
        start_tls=False,
        validate_certs=False,
    )
    try:
        await _open(client, target, options, tls=tls)
        replies = await _transaction(client, target, envelope, options)
    except BaseException:
        client.close()  # no polite QUIT: it could hold up a cancellation
        raise
    if client.is_connected:
        with suppress(aiosmtplib.SMTPException, OSError):
            await client.quit(timeout=options.quit_timeout)
    client.close()
    return replies


async def _open(
    client: aiosmtplib.SMTP, target: Target, options: SessionOptions, *, tls: bool
) -> None:
    """Connect, read the greeting, introduce ourselves, and upgrade to TLS if we can."""
    try:
        await client.connect(timeout=options.connect_timeout)
        await _hello(client)
    except aiosmtplib.SMTPResponseException as exc:
        raise _HostUnavailable(f"{exc.code} {exc.message}") from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _HostUnavailable(str(exc)) from exc
    if not (tls and client.supports_extension("starttls")):
        return
    try:
        await client.starttls(server_hostname=target.host)
        await _hello(client)
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise _TLSFailed(str(exc)) from exc


async def _hello(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()  # a pre-ESMTP server


async def _transaction(
    client: aiosmtplib.SMTP, target: Target, envelope: Envelope, options: SessionOptions
) -> dict[str, Reply]:
    """MAIL, one RCPT per recipient, DATA once if anyone was accepted."""
    replies: dict[str, Reply] = {}
    recipients = list(envelope.recipients)
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
        except aiosmtplib.SMTPResponseException as exc:
            reply = Reply(exc.code, exc.message)
        replies.update(dict.fromkeys(accepted, reply))
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Lost the connection or timed out mid-transaction: whoever has no answer yet waits.
        lost = Reply(451, f"4.4.2 {target}: {exc}")
        replies.update((r, lost) for r in recipients if r not in replies)
    return replies


def _mail_options(client: aiosmtplib.SMTP, envelope: Envelope, utf8: bool) -> list[str]:
    options: list[str] = []
    if client.supports_extension("size"):
        options.append(f"SIZE={len(envelope.message)}")
    if not envelope.message.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if utf8:
        options.append("SMTPUTF8")
    return options
