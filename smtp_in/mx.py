"""The MX port's handler: mail from other servers for the users we host, and nothing else.

RCPT accepts only existing users of domains we host (no open relay), at most
``POSTROOM_MAX_RECIPIENTS`` per message. DATA prepends a ``Received:`` line, makes the message
durable through :func:`storage.repositories.inbound.accept` (blob written, row committed) and
only then answers 250; if storing fails the client is told to try again later (451), so it keeps
its copy. Parsing happens later, in the processors, off the session.
"""

from __future__ import annotations

import logging

from aiosmtpd.smtp import SMTP, Envelope, Session

from postroom.ids import new_id
from postroom.logs import message_context
from smtp_in.handler import SessionHandler, peer_ip
from storage.repositories import inbound
from storage.repositories.accounts import find_user, hosted_domain

__all__ = ["InboundHandler"]

log = logging.getLogger(__name__)


class InboundHandler(SessionHandler):
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal, recipient = self.screen_recipient(envelope, address)
        if refusal is not None:
            return refusal
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
        async with self.storing():
            return await self._store(session, envelope)

    async def _store(self, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        peer = peer_ip(session)
        header = self.received(session, envelope, new_id())
        try:
            row = await inbound.accept(
                self.store,
                header + content,
                mail_from=envelope.mail_from or "",
                rcpt_to=list(envelope.rcpt_tos),
                source="smtp",
                peer=peer,
                helo=session.host_name or "",
            )
        except Exception:
            log.exception("could not store a message from %s; the client will retry", peer)
            return "451 4.3.0 Temporary failure storing the message; please try again later"
        with message_context(row.id):
            log.info(
                "accepted %s from <%s> for %d recipient(s)",
                row.id,
                envelope.mail_from,
                len(envelope.rcpt_tos),
            )
        return f"250 2.0.0 OK: queued as {row.id}"
