"""What the MX and the submission handlers share: EHLO keywords, trace headers, draining.

Both are aiosmtpd handlers (``handle_RCPT``, ``handle_DATA`` hooks). The base advertises the
extensions the protocol layer implements (PIPELINING, ENHANCEDSTATUSCODES), writes the
``Received:`` line both ports prepend, and counts messages being stored so shutdown can wait
for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.addresses import normalize_address
from postroom.errors import InvalidAddress
from smtp_in.received import received_header
from storage.registry import Storage

__all__ = ["SessionHandler", "peer_ip"]


def peer_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class SessionHandler:
    offer_auth = False
    """Whether EHLO lists AUTH (aiosmtpd lists it only once TLS is up, unless allowed)."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        kept = [line for line in responses if self.offer_auth or not line.startswith("250-AUTH")]
        return [*kept[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", kept[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if (refusal := self.needs_smtputf8(envelope, address)) is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    @staticmethod
    def needs_smtputf8(envelope: Envelope, address: str) -> str | None:
        """The refusal of a non-ASCII address sent without ``SMTPUTF8`` (RFC 6531 3.4)."""
        if envelope.smtp_utf8 or address.isascii():
            return None
        return "553 5.6.7 A non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM"

    def screen_recipient(self, envelope: Envelope, address: str) -> tuple[str | None, str]:
        """What both ports check of any RCPT before their own rules: the recipient limit,
        SMTPUTF8 and syntax. Gives ``(refusal, "")`` or ``(None, normalised address)``."""
        limit = self.store.settings.max_recipients
        if len(envelope.rcpt_tos) >= limit:
            return f"452 4.5.3 Too many recipients: at most {limit} per message", ""
        if (refusal := self.needs_smtputf8(envelope, address)) is not None:
            return refusal, ""
        try:
            return None, normalize_address(address).lower()
        except InvalidAddress:
            return "553 5.1.3 Recipient address is not a valid mail address", ""

    @asynccontextmanager
    async def storing(self) -> AsyncIterator[None]:
        """Around making a message durable: shutdown waits until none is in flight."""
        self.in_flight += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()

    def received(self, session: Session, envelope: Envelope, queue_id: str) -> bytes:
        """The trace line, naming the protocol as RFC 3848 and RFC 6531 register it."""
        if not session.extended_smtp:
            protocol = "SMTP"
        else:
            protocol = "UTF8SMTP" if envelope.smtp_utf8 else "ESMTP"
            protocol += "S" if session.ssl is not None else ""
            protocol += "A" if session.authenticated else ""
        return received_header(
            helo=session.host_name or "unknown",
            peer_ip=peer_ip(session),
            hostname=self.store.settings.hostname,
            protocol=protocol,
            queue_id=queue_id,
            recipient=envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None,
        )
