"""The submission port's handler: our users sending mail from a mail client.

AUTH PLAIN and LOGIN (offered after STARTTLS, see :mod:`smtp_in.protocol`) identify the user;
``MAIL FROM`` must be their own address, so nobody can send as a colleague. Recipients may be
anywhere. The message then takes the same path as ``POST /api/v1/send``
(:func:`storage.outbox.submit`): a Sent copy, local recipients through the inbound pipeline,
remote ones on the outgoing queue, all durable before the 250. Unknown local users and
suppressed addresses are refused at RCPT, where the client can tell which recipient failed.
"""

from __future__ import annotations

import binascii
import logging
from base64 import b64decode

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from postroom.addresses import normalize_address
from postroom.errors import InvalidAddress, InvalidInput
from postroom.ids import new_id
from postroom.logs import message_context
from search.documents import with_index
from smtp_in.auth import Authenticator, Submitter
from smtp_in.handler import SessionHandler, peer_ip
from smtp_in.replies import one_line
from storage.db.models import User
from storage.outbox import submit
from storage.registry import Storage
from storage.repositories import suppressions
from storage.repositories.accounts import find_user, hosted_domain

__all__ = ["SubmissionHandler"]

log = logging.getLogger(__name__)

_UNDECODABLE = "501 5.5.2 Cannot decode the AUTH response (base64 expected)"


class SubmissionHandler(SessionHandler):
    offer_auth = True

    def __init__(self, store: Storage) -> None:
        super().__init__(store)
        self.authenticator = Authenticator(store)

    # -- AUTH: aiosmtpd awaits handler methods named auth_<MECHANISM> -------------------------

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        response = await server.challenge_auth("") if len(args) == 1 else _b64(args[1])
        if not isinstance(response, bytes):
            if response is None:  # not base64 (MISSING: the client cancelled, aiosmtpd said 501)
                await server.push(_UNDECODABLE)
            return AuthResult(success=False, handled=True)
        parts = response.split(b"\x00")
        if len(parts) != 3 or parts[0] not in (b"", parts[1]):  # no acting for another user
            await server.push("501 5.5.2 AUTH PLAIN wants [authzid] NUL user NUL password")
            return AuthResult(success=False, handled=True)
        return await self._check(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await server.challenge_auth("Username:")
            if not isinstance(login, bytes):
                return AuthResult(success=False, handled=True)
        else:
            decoded = _b64(args[1])
            if decoded is None:
                await server.push(_UNDECODABLE)
                return AuthResult(success=False, handled=True)
            login = decoded
        password = await server.challenge_auth("Password:")
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._check(server, login, password)

    async def _check(self, server: SMTP, login: bytes, password: bytes) -> AuthResult:
        assert server.session is not None
        try:
            outcome = await self.authenticator.check(
                peer_ip(server.session), login.decode("utf-8"), password.decode("utf-8")
            )
        except UnicodeDecodeError:
            outcome = "535 5.7.8 Authentication credentials invalid"
        if isinstance(outcome, str):
            # handled=False, or aiosmtpd sends no reply at all
            return AuthResult(success=False, handled=False, message=outcome)
        log.info("%s authenticated from %s", outcome.address, peer_ip(server.session))
        return AuthResult(success=True, auth_data=outcome)

    # -- the envelope -------------------------------------------------------------------------

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        submitter = session.auth_data
        assert isinstance(submitter, Submitter), "aiosmtpd requires AUTH before MAIL here"
        if (refusal := self.needs_smtputf8(envelope, address)) is not None:
            return refusal
        try:
            sender = normalize_address(address).lower()
        except InvalidAddress:
            sender = None
        if sender != submitter.address.lower():
            return (
                f"553 5.7.1 You may send only as <{submitter.address}>, "
                f"not as <{one_line(address, 320)}>"
            )
        envelope.mail_from = submitter.address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal, recipient = self.screen_recipient(envelope, address)
        if refusal is not None:
            return refusal
        async with self.store.db.session() as db:
            local = await hosted_domain(db, recipient.rsplit("@", 1)[1]) is not None
            if local and await find_user(db, recipient) is None:
                return f"550 5.1.1 <{recipient}>: no such user here"
            if await suppressions.active(db, [recipient]):
                return (
                    f"550 5.7.1 <{recipient}> is on the suppression list after a permanent "
                    "bounce; mail to it is refused until an administrator removes it"
                )
        if recipient not in envelope.rcpt_tos:
            envelope.rcpt_tos.append(recipient)
            envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    # -- the message --------------------------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        submitter = session.auth_data
        assert isinstance(submitter, Submitter)
        async with self.storing():
            async with self.store.db.session() as db:
                user = await db.get(User, submitter.user_id)
            if user is None:
                return f"554 5.7.1 The account {submitter.address} no longer exists"
            raw = self.received(session, envelope, new_id()) + (envelope.original_content or b"")
            try:
                recorded = await submit(
                    self.store,
                    user,
                    raw,
                    recipients=list(envelope.rcpt_tos),
                    bcc=[],
                    on_record=with_index(None),
                )
            except InvalidInput as exc:
                return f"550 5.7.1 {one_line(exc.message)}"
            except Exception:
                log.exception("could not store a submission from %s", submitter.address)
                return "451 4.3.0 Temporary failure storing the message; please try again later"
        with message_context(recorded.outbound.id):
            log.info(
                "submitted %s from %s for %d recipient(s)",
                recorded.outbound.id,
                submitter.address,
                len(envelope.rcpt_tos),
            )
        return f"250 2.0.0 OK: queued as {recorded.outbound.id}"


def _b64(text: str) -> bytes | None:
    if text == "=":  # RFC 4954: an empty initial response
        return b""
    try:
        return b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
