"""The ``smtp-in`` role: the MX port and the submission port, run as one service.

Both listeners run :class:`smtp_in.protocol.HardenedSMTP` with STARTTLS; they differ in their
handler and policy. The MX port (:class:`smtp_in.mx.InboundHandler`) takes mail for our users
from anyone, AUTH not offered, STARTTLS optional so any server can deliver. The submission port
(:class:`smtp_in.submission.SubmissionHandler`) requires AUTH, offered only after STARTTLS, and
relays for its users. Both answer 250 only once the message is durable.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from smtp_in.mx import InboundHandler
from smtp_in.protocol import HardenedSMTP, SessionPolicy
from smtp_in.session_limits import PeerSessions
from smtp_in.submission import SubmissionHandler
from smtp_in.tls import server_context
from storage.registry import Storage

__all__ = ["SmtpServer"]

_SHUTDOWN = b"421 4.3.2 Service shutting down, try again later\r\n"


class SmtpServer:
    """Stopping closes both ports, lets DATA in flight finish, then hangs up."""

    name = "smtp-in"

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.handler = InboundHandler(store)
        self.submission = SubmissionHandler(store)
        self._servers: list[asyncio.Server] = []
        self._sessions: set[HardenedSMTP] = set()

    async def start(self) -> list[str]:
        settings = self.store.settings
        tls = await asyncio.to_thread(server_context, settings)
        base = SessionPolicy(
            hostname=settings.hostname,
            max_message_size=settings.max_message_size,
            tls_context=tls,
            command_timeout=settings.smtp_command_timeout_seconds,
            data_timeout=settings.smtp_data_timeout_seconds,
        )
        submission = replace(
            base,
            auth_required=True,
            offer_auth=True,
            plaintext_auth_on_loopback=settings.submission_plaintext_auth,
        )
        listeners = [
            (settings.smtp_port, self.handler, base, "MX"),
            (settings.submission_port, self.submission, submission, "submission"),
        ]
        addresses = []
        loop = asyncio.get_running_loop()
        for port, handler, policy, label in listeners:
            peers = PeerSessions(settings.max_sessions_per_ip)

            def factory(
                handler: object = handler,
                policy: SessionPolicy = policy,
                peers: PeerSessions = peers,
            ) -> HardenedSMTP:
                return HardenedSMTP(handler, policy, peers, self._sessions)

            self._servers.append(await loop.create_server(factory, settings.listen_address, port))
            addresses.append(f"smtp://{settings.listen_address}:{port} ({label}, STARTTLS)")
        return addresses

    @property
    def in_flight(self) -> int:
        return self.handler.in_flight + self.submission.in_flight

    async def stop(self, grace: float) -> None:
        """Refuse new connections, let open transactions finish, tell idle clients 421."""
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while True:
            busy = {p for p in self._sessions if p.in_transaction}
            for protocol in self._sessions - busy:
                protocol.hang_up(_SHUTDOWN)
            if (not busy and self.in_flight == 0) or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for protocol in list(self._sessions):
            protocol.hang_up(_SHUTDOWN)
