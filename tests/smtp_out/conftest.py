"""Real peers for smtp-out tests: a DNS server, SMTP receivers, a storage on SQLite.

dnsmasq serves the test zone below on a free loopback port; receivers are aiosmtpd servers
(or a bare asyncio server for answers aiosmtpd will not give) on 127.0.0.2, .3, .4, all on the
one port the settings name as ``delivery_port``, as mail hosts on port 25 would be.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from gateway.send_schemas import SendRequest
from gateway.sending import send
from postroom.settings import Settings
from smtp_out.worker import DeliveryWorker
from storage.db.models import Delivery, DeliveryRecipient, QueueJob, User
from storage.registry import Storage
from storage.repositories.accounts import add_domain, add_user
from storage.repositories.outbound import RecordedSend
from tests.support.dnsmasq import Dnsmasq, DnsmasqFailed, free_port
from tests.support.services import require
from tests.support.stores import migrated_storage

MX1, MX2, BARE = "127.0.0.2", "127.0.0.3", "127.0.0.4"

ZONE = [
    "--mx-host=remote.test,mx1.remote.test,10",
    "--mx-host=remote.test,mx2.remote.test,20",
    f"--host-record=mx1.remote.test,{MX1}",
    f"--host-record=mx2.remote.test,{MX2}",
    "--mx-host=equal.test,a.equal.test,10",
    "--mx-host=equal.test,b.equal.test,10",
    f"--host-record=a.equal.test,{MX1}",
    f"--host-record=b.equal.test,{MX2}",
    "--mx-host=nullmx.test,.,0",
    f"--host-record=nomx.test,{BARE}",
    "--mx-host=dangling.test,nowhere.dangling.test,10",
]
"""Any other name under .test is NXDOMAIN; names elsewhere are REFUSED (no upstream)."""


@pytest.fixture(scope="session")
def dns_port() -> Iterator[int]:
    try:
        server = Dnsmasq()
        server.start(ZONE, probe="mx1.remote.test")
    except DnsmasqFailed as exc:
        require(False, str(exc))
        raise
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture
def delivery_port() -> int:
    return free_port((MX1, MX2, BARE))


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and its key."""
    openssl = shutil.which("openssl")
    require(openssl is not None, "openssl is not installed")
    assert openssl is not None
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=mx1.remote.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_context(tls_certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A server context for a receiver that offers STARTTLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_certificate)
    return context


@dataclass
class Received:
    helo: str | None
    tls: bool
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer: Any = None
    """The client's (address, port): one per connection, so it tells connections apart."""


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps what it got and refuses chosen recipients."""

    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued as 42"
    stall: float = 0.0
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.stall)
        self.received.append(
            Received(
                helo=session.host_name,
                tls=session.ssl is not None,
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.content,
                peer=session.peer,
            )
        )
        return self.data_reply


@dataclass
class Chaos:
    connections: int = 0
    heard: list[bytes] = field(default_factory=list)


class Peers:
    """Starts SMTP peers on the delivery port and stops them all at the end."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._controllers: list[Controller] = []
        self._servers: list[asyncio.Server] = []

    async def receiver(
        self,
        address: str,
        *,
        tls: ssl.SSLContext | None = None,
        smtputf8: bool = True,
        **behaviour: Any,
    ) -> Recorder:
        recorder = Recorder(**behaviour)
        controller = Controller(
            recorder,
            hostname=address,
            port=self.port,
            tls_context=tls,
            enable_SMTPUTF8=smtputf8,
            ready_timeout=10,
        )
        await asyncio.to_thread(controller.start)
        self._controllers.append(controller)
        return recorder

    async def serve(self, address: str, script: list[bytes]) -> Chaos:
        """A chaos peer: sends each line of ``script`` after reading a line (the first line
        is the greeting), then hangs up.
        """
        chaos = Chaos()

        async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            chaos.connections += 1
            for number, line in enumerate(script):
                if number:
                    chaos.heard.append(await reader.readline())
                writer.write(line)
                await writer.drain()
            writer.close()

        self._servers.append(await asyncio.start_server(talk, address, self.port))
        return chaos

    async def greeter(self, address: str, greeting: bytes) -> Chaos:
        """A peer that only greets (with, say, 421) and hangs up."""
        return await self.serve(address, [greeting])

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        for controller in self._controllers:
            await asyncio.to_thread(controller.stop)


@pytest.fixture
async def peers(delivery_port: int) -> AsyncIterator[Peers]:
    result = Peers(delivery_port)
    try:
        yield result
    finally:
        await result.close()


@pytest.fixture
async def store(
    tmp_path: Path, own_database_url: str, dns_port: int, delivery_port: int
) -> AsyncIterator[Storage]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=own_database_url,
        blob_url=f"file://{tmp_path / 'blobs'}",
        redis_url=None,
        delivery_port=delivery_port,
        dns_nameservers=f"127.0.0.1:{dns_port}",
        hostname="postroom.test",
    )
    async with migrated_storage(settings) as opened:
        yield opened


async def eventually(condition: Callable[[], Awaitable[bool]], limit: float = 30) -> None:
    """Wait for a condition on what a user would see (the database), polling it."""
    async with asyncio.timeout(limit):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.05)


class Mail:
    """Sends as the API does, runs a worker, and reads back what a user would see."""

    def __init__(self, store: Storage, sender: User) -> None:
        self.store = store
        self.sender = sender

    async def send(self, *to: str, subject: str = "Lunch?", text: str = "Noon?") -> RecordedSend:
        request = SendRequest(to=list(to), subject=subject, text=text)
        return await send(self.store, self.sender, request)

    async def run_worker(
        self,
        until: Callable[[], Awaitable[bool]] | None = None,
        *,
        configure: Callable[[DeliveryWorker], None] | None = None,
        limit: float = 30,
    ) -> None:
        """Run a worker until ``until`` holds (default: no remote recipient still queued)."""
        worker = DeliveryWorker(self.store)
        if configure is not None:
            configure(worker)
        await worker.start()
        try:
            await eventually(until or self.attempted, limit)
        finally:
            await worker.stop(5.0)

    async def attempted(self) -> bool:
        return all(r.status != "queued" for r in await self.recipients(local=False))

    async def recipients(self, *, local: bool | None = None) -> list[DeliveryRecipient]:
        query = select(DeliveryRecipient).join(
            Delivery, Delivery.id == DeliveryRecipient.delivery_id
        )
        if local is not None:
            query = query.where(Delivery.local.is_(local))
        async with self.store.db.session() as session:
            return list(await session.scalars(query.order_by(DeliveryRecipient.address)))

    async def recipient(self, address: str) -> DeliveryRecipient:
        found = [r for r in await self.recipients() if r.address == address]
        assert len(found) == 1, f"{address}: {found}"
        return found[0]

    async def delivery(self, delivery_id: str) -> Delivery:
        async with self.store.db.session() as session:
            return await session.get_one(Delivery, delivery_id)

    async def set_delivery(self, delivery_id: str, **values: datetime | str | int) -> None:
        async with self.store.db.session() as session, session.begin():
            await session.execute(update(Delivery).where(Delivery.id == delivery_id).values(values))

    async def queued_jobs(self) -> list[QueueJob]:
        async with self.store.db.session() as session:
            return list(await session.scalars(select(QueueJob).where(QueueJob.queue == "outgoing")))


@pytest.fixture
async def mail(store: Storage) -> Mail:
    async with store.db.session() as session, session.begin():
        await add_domain(session, "postroom.test")
        await add_user(session, "bob@postroom.test", "a long password")
        alice = await add_user(session, "alice@postroom.test", "a long password")
    return Mail(store, alice)
