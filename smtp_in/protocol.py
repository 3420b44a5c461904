"""aiosmtpd's SMTP protocol, hardened: the one session class both ports run.

What it adds to aiosmtpd:

- a cap on concurrent sessions per client address (``421 4.7.0`` past it);
- DATA read by :func:`smtp_in.data_reader.read_data` (CRLF only, against SMTP smuggling;
  bounded lines and size, ``552 5.3.4`` over the limit);
- RFC 5321 timeouts: one for the wait between commands, a shorter one between lines of DATA,
  and a ``421 4.4.2`` before hanging up on an idle client;
- enhanced status codes on every reply (:mod:`smtp_in.replies`);
- per-session command size limits (aiosmtpd grows a class-wide table on every EHLO), and caps
  on repeated commands (:data:`CALL_LIMITS`); a second STARTTLS is refused;
- no AUTH at all where the policy offers none, and plaintext AUTH from loopback only when the
  settings allow it;
- a handle for shutdown: whether a transaction is open, and a way to say 421 and hang up.

After STARTTLS aiosmtpd throws away whatever the client pipelined in plaintext (RFC 3207 4.2;
its ``connection_made`` clears the reader's buffer), so nothing here needs to; the tests prove
it.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Session, syntax

from postroom.metrics import SMTP_REPLIES, SMTP_SESSIONS
from smtp_in.data_reader import MAX_LINE, read_data
from smtp_in.replies import with_enhanced_code
from smtp_in.session_limits import PeerSessions

__all__ = ["HardenedSMTP", "SessionPolicy"]

log = logging.getLogger(__name__)

CALL_LIMITS = {
    **dict.fromkeys(("NOOP", "RSET", "HELP", "VRFY", "EXPN", "HELO", "EHLO"), 100),
    "AUTH": 5,
    "*": 1_000_000,
}
"""Commands per session before ``421 4.7.0`` and a hang-up: junk cannot hold a session open
forever by resetting the idle timer, and one session cannot try many passwords."""

COMMAND_LINE_LIMIT = 512
"""Octets in a command line with CRLF (RFC 5321 4.5.3.1.4); MAIL grows by its extensions."""


@dataclass(frozen=True)
class SessionPolicy:
    """What one listener allows; shared by all its sessions."""

    hostname: str
    max_message_size: int
    tls_context: ssl.SSLContext | None
    command_timeout: float
    data_timeout: float
    auth_required: bool = False
    offer_auth: bool = False
    plaintext_auth_on_loopback: bool = False


class HardenedSMTP(SMTP):
    line_length_limit = MAX_LINE + 1  # the StreamReader limit: a line plus a stuffed dot

    def __init__(
        self,
        handler: Any,
        policy: SessionPolicy,
        peers: PeerSessions,
        sessions: set[HardenedSMTP],
    ) -> None:
        super().__init__(
            handler,
            hostname=policy.hostname,
            ident="postroom ESMTP",
            data_size_limit=policy.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=policy.tls_context,
            timeout=policy.command_timeout,
            auth_required=policy.auth_required,
            auth_require_tls=True,
            command_call_limit=CALL_LIMITS,
        )
        self.command_size_limits = collections.defaultdict(lambda: COMMAND_LINE_LIMIT)
        self.policy = policy
        self.peers = peers
        self.sessions = sessions
        self._peer_address: str | None = None  # set once admitted; released on close
        self._refused = False
        self._in_greeting_reply = False
        self._data_timer_set = 0.0
        self._port = "?"  # the listening port, the label of this session's metrics

    def _create_session(self) -> Session:
        return _QuietSession(self.loop)

    # -- connection life cycle ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is not None:  # the TLS layer after STARTTLS
            super().connection_made(transport)
            return
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        local = transport.get_extra_info("sockname")
        self._port = str(local[1]) if isinstance(local, tuple) else "?"
        SMTP_SESSIONS.labels(self._port).inc()
        if not self.peers.admit(address):
            self._refused = True
            SMTP_REPLIES.labels(self._port, "421").inc()
            log.warning("refused a session from %s: %d already open", address, self.peers.limit)
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(
                b"421 4.7.0 Too many concurrent sessions from your address; try again later\r\n"
            )
            transport.close()
            return
        self._peer_address = address
        self.sessions.add(self)
        if self.policy.plaintext_auth_on_loopback and _is_loopback(address):
            self._auth_require_tls = False
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self.sessions.discard(self)
        if self._peer_address is not None:
            self.peers.release(self._peer_address)
            self._peer_address = None
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def _timeout_cb(self) -> None:
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write(b"421 4.4.2 " + self.hostname.encode() + b" Timeout, closing\r\n")
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    # -- replies ------------------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            status = status.encode("utf-8")
        if not self._in_greeting_reply:
            status = with_enhanced_code(status)
        if status[3:4] != b"-":  # the last line of a reply: count each reply once
            SMTP_REPLIES.labels(self._port, status[:3].decode("ascii", "replace")).inc()
        await super().push(status)

    async def handle_exception(self, error: Exception) -> str:
        log.exception("SMTP session with %s failed", self._peer_address)
        return "451 4.3.0 Local error in processing; please try again later"

    # -- commands -----------------------------------------------------------------------------

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        self._in_greeting_reply = True  # RFC 2034: no enhanced codes in HELO/EHLO replies
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_greeting_reply = False

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self.command_size_limits.clear()
        self._in_greeting_reply = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_greeting_reply = False

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None:
            await self.push("503 5.5.1 TLS is already active")
            return
        await super().smtp_STARTTLS(arg)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if not self.policy.offer_auth:
            await self.push("502 5.5.1 AUTH is not offered on this port; use the submission port")
            return
        await super().smtp_AUTH(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Need a recipient first (RCPT TO)")
            return
        if arg:
            await self.push("501 5.5.4 DATA takes no argument")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._reset_timeout(self.policy.data_timeout)
        self._data_timer_set = self.loop.time()
        result = await read_data(
            self._reader,
            max_size=self.policy.max_message_size,
            on_line=self._restart_data_timeout,
        )
        self._reset_timeout()
        if result.refusal is not None:
            log.info("refused DATA from %s: %s", self._peer_address, result.refusal)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(result.refusal)
            return
        self.envelope.content = result.content
        self.envelope.original_content = result.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 2.0.0 OK" if not isinstance(status, str) else status)

    def _restart_data_timeout(self) -> None:
        """At most once a second: a timer per line would cost more than reading the line."""
        now = self.loop.time()
        if now - self._data_timer_set >= 1.0:
            self._data_timer_set = now
            self._reset_timeout(self.policy.data_timeout)

    # -- shutdown -----------------------------------------------------------------------------

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


class _QuietSession(Session):
    """aiosmtpd sets the deprecated ``login_data`` on every AUTH and warns about itself."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
