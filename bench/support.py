"""What benchmarks share: real peers, a running postroom, SMTP load, and Markdown results.

Every peer is a real program started for the run and stopped after it:

- :class:`Dnsmasq` (from ``tests.support.dnsmasq``) answers MX and A records for made-up domains;
- :class:`SmtpSink` is Postfix's ``smtp-sink``, which accepts and discards mail and keeps a
  running count of the messages it got (its ``-c`` counters, read from its stdout);
- :class:`PostfixRelay` is a private Postfix instance (its own config, queue and port in a
  temporary directory; the system's Postfix service is not used) relaying to one host;
- :func:`running_postroom` is ``postroom up`` through the tests' :class:`Platform`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from types import TracebackType

import aiosmtplib
import asyncpg

from tests.support.dnsmasq import Dnsmasq, free_port, program
from tests.support.platform import Platform

__all__ = [
    "RESULTS",
    "Dnsmasq",
    "Message",
    "PostfixDiscard",
    "PostfixRelay",
    "PostfixUnavailable",
    "SmtpSink",
    "cpu_seconds",
    "free_port",
    "markdown_table",
    "note",
    "running_postroom",
    "smtp_send_all",
    "write_result",
]

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
POSTGRES_ADMIN_URL = os.environ.get(
    "POSTROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def note(text: str) -> None:
    """Progress for the person watching; results go to stdout, this to stderr."""
    print(f"bench: {text}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc).

    On a shared machine CPU time per unit of work is the figure that does not depend on how
    busy the neighbours are; latencies do.
    """
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_port(address: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, port), 0.5):
            return True
        time.sleep(0.05)
    return False


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- DNS ------------------------------------------------------------------------------------


# -- the receiving end ----------------------------------------------------------------------


class SmtpSink:
    """Postfix's ``smtp-sink`` on ``address:port``: takes every message, keeps none, counts.

    ``-c`` makes it print ``sess=N quit=N mesg=N`` followed by a carriage return each time a
    message arrives or a session ends; a thread reads that and keeps :attr:`count` current.
    """

    _MESSAGES = re.compile(rb"mesg=(\d+)")

    def __init__(self, address: str = "127.0.0.2") -> None:
        self.address = address
        self.port = 0
        self.count = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> SmtpSink:
        binary = program("smtp-sink")
        if binary is None:
            raise RuntimeError("smtp-sink is not installed (Debian: postfix)")
        self.port = free_port((self.address,))
        self._process = subprocess.Popen(
            [binary, "-c", "-u", "nobody", f"{self.address}:{self.port}", "1000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not wait_for_port(self.address, self.port):
            self.__exit__(None, None, None)
            raise RuntimeError("smtp-sink did not start listening")
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        pending = b""
        while chunk := os.read(self._process.stdout.fileno(), 65536):
            *lines, pending = (pending + chunk).split(b"\r")
            for line in reversed(lines):
                if found := self._MESSAGES.search(line):
                    self.count = int(found.group(1))
                    break

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            stop_process(self._process)
        if self._reader is not None:
            self._reader.join(timeout=5)

    async def wait_for(self, total: int, stall: float) -> float | None:
        """Wait until :attr:`count` reaches ``total``; the ``perf_counter`` time it did, or
        None if no message arrived for ``stall`` seconds first.
        """
        last, progressed = self.count, time.perf_counter()
        while self.count < total:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            if self.count != last:
                last, progressed = self.count, now
            elif now - progressed > stall:
                return None
        return time.perf_counter()


# -- the messages and a plain SMTP client ---------------------------------------------------


@dataclass(frozen=True)
class Message:
    sender: str
    recipient: str
    subject: str
    text: str

    def as_json(self) -> dict[str, object]:
        """The body of ``POST /api/v1/send`` for this message."""
        return {"to": [self.recipient], "subject": self.subject, "text": self.text}

    def as_bytes(self, hostname: str) -> bytes:
        """The message as an MUA would submit it: the headers postroom writes, same body."""
        message = EmailMessage(policy=SMTP)
        message["From"] = self.sender
        message["To"] = self.recipient
        message["Subject"] = self.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=hostname)
        message.set_content(self.text)
        return message.as_bytes()


async def smtp_send_all(
    address: str,
    port: int,
    messages: Sequence[tuple[str, str, bytes]],
    connections: int,
    helo: str = "client.bench.test",
) -> None:
    """Send every (sender, recipient, bytes) over ``connections`` connections, each reused
    for message after message, as fast as the peer takes them.
    """
    waiting = deque(messages)

    async def one_connection() -> None:
        client = aiosmtplib.SMTP(
            hostname=address, port=port, local_hostname=helo, start_tls=False, timeout=60
        )
        async with client:
            while waiting:
                sender, recipient, raw = waiting.popleft()
                await client.sendmail(sender, [recipient], raw)

    async with asyncio.TaskGroup() as group:
        for _ in range(connections):
            group.create_task(one_connection())


# -- a private Postfix ----------------------------------------------------------------------


class PostfixUnavailable(Exception):
    """A private Postfix instance could not be started here; the message says why."""


MASTER_CF = """\
# service  type  private unpriv chroot wakeup maxproc command
{listen}   inet  n       -       n       -       -       smtpd
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
local      unix  -       n       n       -       -       local
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
"""
"""Debian's master.cf services, none chrooted (a chroot would need a copy of /etc)."""


class PostfixRelay:
    """A Postfix of our own: config, queue and log in a temporary directory, SMTP on
    127.0.0.1:``port``, relaying everything to ``[relay_address]:relay_port`` over at most
    ``connections`` connections. Defaults everywhere else, as Debian ships them.
    """

    def __init__(self, relay_address: str, relay_port: int, connections: int) -> None:
        self.relay = f"[{relay_address}]:{relay_port}"
        self.connections = connections
        self.port = 0
        self.version = ""
        self._dir: Path | None = None
        self._postfix = ""

    def __enter__(self) -> PostfixRelay:
        postfix, postconf = program("postfix"), program("postconf")
        if postfix is None or postconf is None:
            raise PostfixUnavailable("Postfix is not installed (Debian: postfix)")
        self._postfix = postfix
        self._dir = Path(tempfile.mkdtemp(prefix="postroom-bench-postfix-"))
        self._dir.chmod(0o755)
        conf, queue, data = (self._dir / name for name in ("conf", "queue", "data"))
        for folder in (conf, queue, data):
            folder.mkdir()
        try:
            shutil.chown(data, "postfix")
        except (LookupError, PermissionError) as exc:
            self._cleanup()
            raise PostfixUnavailable(
                f"cannot give the data directory to user postfix: {exc}"
            ) from exc
        self.port = free_port()
        (conf / "main.cf").write_text(self._main_cf(queue, data))
        (conf / "master.cf").write_text(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
        self.version = subprocess.run(
            [postconf, "-c", str(conf), "-h", "mail_version"], capture_output=True, text=True
        ).stdout.strip()
        started = self._control("start")
        if started.returncode != 0 or not wait_for_port("127.0.0.1", self.port):
            reason = (started.stdout + started.stderr + self._log_tail()).strip()
            self.__exit__(None, None, None)
            raise PostfixUnavailable(f"postfix -c DIR start failed: {reason or 'no output'}")
        return self

    def _main_cf(self, queue: Path, data: Path) -> str:
        assert self._dir is not None
        return f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
maillog_file = {self._dir / "postfix.log"}
maillog_file_prefixes = {self._dir}
myhostname = relay.postfix.test
mydomain = postfix.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = {self.relay}
smtp_destination_concurrency_limit = {self.connections}
initial_destination_concurrency = {self.connections}
"""

    def _control(self, command: str) -> subprocess.CompletedProcess[str]:
        assert self._dir is not None
        return subprocess.run(
            [self._postfix, "-c", str(self._dir / "conf"), command],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def _log_tail(self) -> str:
        assert self._dir is not None
        log = self._dir / "postfix.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-5:]) if log.exists() else ""

    def log(self) -> str:
        assert self._dir is not None
        log = self._dir / "postfix.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._dir is not None and (self._dir / "queue" / "pid" / "master.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._control("stop")
        self._cleanup()

    def _cleanup(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


class PostfixDiscard(PostfixRelay):
    """A private Postfix whose smtpd takes every message into its own queue (written and
    fsynced before the 250, as Postfix always does) and whose queue manager then hands it to
    the ``discard`` transport: Postfix's durable accept, with no delivery work after it.
    """

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 9, 1)  # relayhost unused: nothing goes to smtp

    def _main_cf(self, queue: Path, data: Path) -> str:
        return super()._main_cf(queue, data) + "default_transport = discard\n"


# -- postroom -------------------------------------------------------------------------------


async def _postgres_admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextlib.contextmanager
def _database_url(kind: str, directory: Path) -> Iterator[str]:
    """The embedded SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'postroom.db'}"
        return
    name = f"postroom_bench_{secrets.token_hex(6)}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def running_postroom(
    env: dict[str, str], database: str, domain: str, users: Sequence[str]
) -> Iterator[Platform]:
    """``postroom up`` with its own data directory, database and ports, plus ``env``; the
    domain and users exist before it starts. Stopped with SIGTERM at the end.
    """
    with (
        # a file reappearing during cleanup must not throw away the run's figures
        tempfile.TemporaryDirectory(prefix="postroom-bench-", ignore_cleanup_errors=True) as folder,
        _database_url(database, Path(folder)) as url,
    ):
        platform = Platform(Path(folder), url)
        platform.env.update(env)
        platform.setup(domain, *users)
        platform.start()
        try:
            yield platform
        finally:
            try:
                platform.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                platform.stop()


# -- results --------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> str:
    """A Markdown table; columns from ``right`` on are right-aligned (they hold numbers)."""
    align = ["---" if i < right else "---:" for i in range(len(headers))]
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines) + "\n"


def write_result(name: str, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(markdown)
    return path
