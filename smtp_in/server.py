"""The SMTP server on the MX port, built on aiosmtpd's handler hooks.

RCPT accepts only existing users of domains we host (no open relay). DATA prepends a
``Received:`` line, makes the message durable through :func:`storage.repositories.inbound.accept`
and only then answers 250; if storing fails the client is told to try again later (451), so it
keeps its copy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.addresses import normalize_address
from postroom.errors import InvalidAddress
from postroom.ids import new_id
from smtp_in.received import received_header
from storage.registry import Storage
from storage.repositories import inbound
from storage.repositories.accounts import find_user, hosted_domain

__all__ = ["InboundHandler", "SmtpServer"]

log = logging.getLogger(__name__)


class InboundHandler:
    def __init__(self, store: Storage) -> None:
        self.store = store
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        try:
            recipient = normalize_address(address).lower()
        except InvalidAddress:
            return "553 5.1.3 Recipient address is not a valid mail address"
        domain = recipient.rsplit("@", 1)[1]
        async with self.store.db.session() as db:
            if await hosted_domain(db, domain) is None:
                return f"554 5.7.1 Relaying denied: we do not accept mail for {domain}"
            if await find_user(db, recipient) is None:
                return f"550 5.1.1 <{recipient}>: no such user here"
        envelope.rcpt_tos.append(recipient)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_flight += 1
        self.idle.clear()
        try:
            return await self._store(server, session, envelope)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.set()

    async def _store(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        queue_id = new_id()
        peer_ip = str(session.peer[0]) if isinstance(session.peer, tuple) else str(session.peer)
        header = received_header(
            helo=session.host_name or "unknown",
            peer_ip=peer_ip,
            hostname=self.store.settings.hostname,
            protocol="ESMTP" if session.extended_smtp else "SMTP",
            queue_id=queue_id,
            recipient=envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 else None,
        )
        try:
            row = await inbound.accept(
                self.store,
                header + content,
                mail_from=envelope.mail_from or "",
                rcpt_to=list(envelope.rcpt_tos),
                source="smtp",
                peer=peer_ip,
            )
        except Exception:
            log.exception("could not store a message from %s; the client will retry", peer_ip)
            return "451 4.3.0 Temporary failure storing the message; please try again later"
        log.info(
            "accepted %s from <%s> for %d recipient(s)",
            row.id,
            envelope.mail_from,
            len(envelope.rcpt_tos),
        )
        return f"250 2.0.0 OK: queued as {row.id}"


class SmtpServer:
    """The MX listener. Stopping closes the port, lets DATA in flight finish, then hangs up."""

    name = "smtp-in"

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.handler = InboundHandler(store)
        self._server: asyncio.Server | None = None
        self._sessions: set[_TrackedSMTP] = set()

    def _protocol(self) -> _TrackedSMTP:
        settings = self.store.settings
        protocol = _TrackedSMTP(
            self.handler,
            hostname=settings.hostname,
            ident="postroom ESMTP",
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
        )
        protocol.sessions = self._sessions
        return protocol

    async def start(self) -> list[str]:
        settings = self.store.settings
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, settings.listen_address, settings.smtp_port
        )
        return [f"smtp://{settings.listen_address}:{settings.smtp_port} (MX)"]

    async def stop(self, grace: float) -> None:
        """Refuse new connections, let open transactions finish, tell idle clients 421."""
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            busy = {p for p in self._sessions if p.in_transaction}
            for protocol in self._sessions - busy:
                protocol.hang_up(b"421 4.3.2 Service shutting down, try again later\r\n")
            if (not busy and self.handler.in_flight == 0) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for protocol in list(self._sessions):
            protocol.hang_up(b"421 4.3.2 Service shutting down, try again later\r\n")


class _TrackedSMTP(SMTP):
    """aiosmtpd's protocol, remembering open sessions so shutdown can close them."""

    sessions: set[_TrackedSMTP]

    def connection_made(self, transport: Any) -> None:
        self.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.sessions.discard(self)
        super().connection_lost(error)

    @property
    def in_transaction(self) -> bool:
        """Between MAIL FROM and the reply to DATA: a client is handing us a message."""
        envelope = getattr(self, "envelope", None)
        return envelope is not None and envelope.mail_from is not None

    def hang_up(self, reply: bytes) -> None:
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(reply)
            transport.close()
