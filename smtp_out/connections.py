"""Open SMTP connections to mail hosts: reused, capped per host, with the configured TLS.

A worker keeps an idle connection to a host after a transaction and uses it for the next
message to that host, which saves a TCP and TLS handshake per message on a busy route. A
connection parked for more than ``probe_after`` seconds, or left with a transaction open (no
recipient accepted, DATA refused), gets an RSET first, to be sure it is still good and clean;
one handed straight on after a completed transaction does not (the 250 after DATA ended the
transaction, RFC 5321 4.1.4), saving a round trip per message. At most
``connections_per_host`` connections per host address are open at once; a delivery needing
another waits for one, never drops the message.

TLS modes (``POSTROOM_DELIVERY_TLS``), after Postfix's ``smtp_tls_security_level``:
``opportunistic`` (``may``): STARTTLS when offered, certificates not checked, plaintext again
if the handshake fails; ``require`` (``encrypt``): no transaction without STARTTLS, certificates
still not checked (verification needs DANE or MTA-STS, which come later); ``off``: never.
A smarthost gets AUTH and, because it is a named relay, checked certificates by default.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import aiosmtplib

from smtp_out.mx import Target

__all__ = ["Connections", "HostUnavailable", "Lease", "SessionOptions"]

log = logging.getLogger(__name__)

TlsMode = Literal["opportunistic", "require", "off"]


@dataclass(frozen=True)
class SessionOptions:
    """How to talk to peers. Timeouts follow Postfix's defaults, themselves after RFC 5321."""

    port: int
    helo: str
    connect_timeout: float = 30.0
    command_timeout: float = 300.0
    data_timeout: float = 600.0
    quit_timeout: float = 10.0
    tls: TlsMode = "opportunistic"
    verify_certificates: bool = False
    implicit_tls: bool = False
    auth: tuple[str, str] | None = field(default=None, repr=False)
    connections_per_host: int = 4
    idle_seconds: float = 30.0
    probe_after: float = 2.0
    """A connection parked longer than this is probed with RSET before it is used again."""


class HostUnavailable(Exception):
    """The host could not start a transaction; nothing was sent, the next host may work."""


class _TLSFailed(HostUnavailable):
    """STARTTLS was offered but did not work; the same host may work without it."""


class Lease:
    """A connection handed to one transaction; ``discard`` when its state is in doubt."""

    def __init__(self, client: aiosmtplib.SMTP, target: Target) -> None:
        self.client = client
        self.target = target
        self.reusable = True
        self.clean = True
        """False while a transaction may be open on the connection (it then needs RSET)."""

    def discard(self) -> None:
        self.reusable = False


class Connections:
    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self._idle: dict[str, list[tuple[float, bool, aiosmtplib.SMTP]]] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._context: ssl.SSLContext | None = None

    @asynccontextmanager
    async def lease(self, target: Target) -> AsyncIterator[Lease]:
        """An open, greeted (and, per the TLS mode, encrypted) connection to ``target``."""
        slots = self._slots.setdefault(
            target.address, asyncio.Semaphore(self.options.connections_per_host)
        )
        async with slots:
            client = await self._reuse(target) or await self._open(target)
            lease = Lease(client, target)
            try:
                yield lease
            except BaseException:
                client.close()  # no polite QUIT: it could hold up a cancellation
                raise
            if lease.reusable and client.is_connected:
                parked = (time.monotonic(), lease.clean, client)
                self._idle.setdefault(target.address, []).append(parked)
            else:
                await self._quit(client)  # never raises: the transaction is already over

    async def close(self) -> None:
        idle, self._idle = self._idle, {}
        for clients in idle.values():
            for _, _, client in clients:
                await self._quit(client)

    async def _reuse(self, target: Target) -> aiosmtplib.SMTP | None:
        clients = self._idle.get(target.address, [])
        while clients:
            parked_at, clean, client = clients.pop()
            idle = time.monotonic() - parked_at
            if idle > self.options.idle_seconds or not client.is_connected:
                await self._quit(client)
                continue
            if clean and idle <= self.options.probe_after:
                return client
            try:
                await client.rset(timeout=self.options.quit_timeout)
            except (aiosmtplib.SMTPException, OSError):
                client.close()
                continue
            return client
        return None

    async def _open(self, target: Target) -> aiosmtplib.SMTP:
        mode = self.options.tls
        try:
            return await self._connect(target, starttls=mode != "off")
        except _TLSFailed as exc:
            if mode == "require":
                raise HostUnavailable(f"TLS is required but failed: {exc}") from exc
            log.info("%s: STARTTLS failed (%s); trying without TLS", target, exc)
            return await self._connect(target, starttls=False)

    async def _connect(self, target: Target, *, starttls: bool) -> aiosmtplib.SMTP:
        options = self.options
        client = aiosmtplib.SMTP(
            hostname=target.address,
            port=options.port,
            local_hostname=options.helo,
            timeout=options.command_timeout,
            use_tls=options.implicit_tls,
            start_tls=False,
            tls_context=self._tls_context(),
        )
        try:
            await self._greet(client, target, starttls=starttls)
        except BaseException:
            client.close()
            raise
        return client

    def _tls_context(self) -> ssl.SSLContext:
        """One context for every connection: loading the CA store is not cheap."""
        if self._context is None:
            self._context = ssl.create_default_context()
            if not self.options.verify_certificates:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
        return self._context

    async def _greet(self, client: aiosmtplib.SMTP, target: Target, *, starttls: bool) -> None:
        options = self.options
        try:
            await client.connect(timeout=options.connect_timeout)
            await _hello(client)
        except aiosmtplib.SMTPResponseException as exc:
            raise HostUnavailable(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise HostUnavailable(str(exc)) from exc
        if starttls and not options.implicit_tls:
            if client.supports_extension("starttls"):
                try:
                    await client.starttls(server_hostname=target.host)
                    await _hello(client)
                except (aiosmtplib.SMTPException, OSError) as exc:
                    raise _TLSFailed(str(exc)) from exc
            elif options.tls == "require":
                raise HostUnavailable("TLS is required but the host does not offer STARTTLS")
        if options.auth is not None:
            if not _encrypted(client):
                raise HostUnavailable("refusing to send credentials over an unencrypted link")
            try:
                await client.login(*options.auth)
            except aiosmtplib.SMTPResponseException as exc:
                raise HostUnavailable(f"authentication failed: {exc.code} {exc.message}") from exc

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        """Say goodbye if we can. Whatever goes wrong here must not undo a delivery."""
        try:
            if client.is_connected:
                await client.quit(timeout=self.options.quit_timeout)
        except Exception as exc:
            log.debug("QUIT failed (%s); closing anyway", exc)
        finally:
            client.close()


def _encrypted(client: aiosmtplib.SMTP) -> bool:
    return client.get_transport_info("sslcontext") is not None


async def _hello(client: aiosmtplib.SMTP) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()  # a pre-ESMTP server
