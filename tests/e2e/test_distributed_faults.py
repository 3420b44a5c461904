"""Two of every role, mixed load, and faults: no mail lost, none filed twice (issue 9, point 5).

Ten ``postroom run ROLE`` processes (two gateways, two smtp-in, two processors, two smtp-out,
two realtime) share one PostgreSQL database of the test's own, Redis (a key prefix of the
test's own) and moto's S3; each process differs only in its listening ports. Client threads
send 1000 messages in over SMTP, spread over both smtp-in ports, to six local users, and
1000 out through ``POST /send`` on both gateways to ``chaos.test``, whose MX (dnsmasq) is a
chaos receiver on 127.0.0.2 failing 20% of the transactions with transient errors only
(tests/support/chaos.py).

While that runs, at points chosen by progress: one processor is SIGKILLed once it has filed
some mail, and started again; one smtp-out worker is SIGKILLed while deliveries are in flight,
and started again; Redis gets ``FLUSHALL``; PostgreSQL is restarted (``pg_ctlcluster``; set
``POSTROOM_TEST_RESTART_POSTGRES=0`` to leave it alone while developing). Clients retry as
real ones do: an SMTP 4xx or a lost connection means "not accepted, send again"; an HTTP 5xx,
429 or a lost connection on ``POST /send`` is repeated with the same ``Idempotency-Key``. Only
a 250 / 202 counts as accepted. ``FAULT_INBOUND``, ``FAULT_OUTBOUND`` (1000 each) and
``FAULT_DEADLINE_SECONDS`` (480, for load and draining) size a run.

Afterwards, to show every process recovered (not just one of each pair), a probe round runs
twice, each time with one processor and one smtp-out paused (SIGSTOP), so the other must do the
work.

What must hold: every accepted inbound message is in its recipient's Inbox exactly once; every
accepted send reached the chaos receiver; every delivery ended ``delivered`` (nothing bounced:
all chaos failures are transient). Duplicates are counted and printed, and allowed only in the
crash windows, which no at-least-once design can close:

- outbound: the remote server said 250 but the worker's record of it was never committed,
  because the worker was SIGKILLed or PostgreSQL went away between the 250 and the commit. The
  delivery's lease then runs out and another worker sends it again (RFC 1047). A duplicate is
  counted as in the window when its first copy was accepted within a few seconds of the kill or
  the PostgreSQL restart; any other duplicate (one after the FLUSHALL, say) fails the test.
- inbound: the client lost the connection (or timed out) after sending DATA, so it cannot know
  whether the 250 was given; it sends again. A duplicate is allowed only for a message that had
  such an ambiguous attempt.
"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis
from aiosmtpd.controller import Controller

from tests.support.chaos import ChaosReceiver
from tests.support.dnsmasq import Dnsmasq, DnsmasqFailed, free_port
from tests.support.moto import MotoS3
from tests.support.platform import Platform
from tests.support.redis import REDIS_URL, require_redis, unique_prefix
from tests.support.services import postgres_database, require

# serial: FLUSHALL empties the shared Redis and PostgreSQL is restarted
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

INBOUND = int(os.environ.get("FAULT_INBOUND", "1000"))
OUTBOUND = int(os.environ.get("FAULT_OUTBOUND", "1000"))
RESTART_POSTGRES = os.environ.get("POSTROOM_TEST_RESTART_POSTGRES", "1") != "0"
if os.environ.get("POSTROOM_TEST_REQUIRE_SERVICES") == "1":
    # CI runs the test as the issue states it: no developer shortcut may shrink it there.
    assert RESTART_POSTGRES and min(INBOUND, OUTBOUND) >= 1000, (
        "POSTROOM_TEST_RESTART_POSTGRES / FAULT_INBOUND / FAULT_OUTBOUND are for development; "
        "unset them when POSTROOM_TEST_REQUIRE_SERVICES=1"
    )
CLIENT_THREADS = 6
DEADLINE_SECONDS = float(os.environ.get("FAULT_DEADLINE_SECONDS", "480"))
"""Everything (load, faults, draining) must be done by then; generous for a loaded machine."""
WINDOW_SLACK = 3.0
"""Seconds around a fault within which a duplicate's first copy counts as in the crash window."""

DOMAIN = "postroom.test"
SENDERS = [f"{name}@{DOMAIN}" for name in ("alice", "dan", "eve", "fay", "gus", "hal")]
"""One per API client thread: a user's sends serialize on their change log (one row lock)."""
LOCAL_USERS = [f"{name}@{DOMAIN}" for name in ("ann", "bob", "cat", "dot", "ed", "flo")]
CHAOS_HOST = "127.0.0.2"
ZONE = ["--mx-host=chaos.test,mx.chaos.test,10", f"--host-record=mx.chaos.test,{CHAOS_HOST}"]
ATTEMPT_SECONDS = 5.0
ROLES = ("gateway", "smtp-in", "processor", "smtp-out", "realtime")


# -- PostgreSQL, as the test sees it --------------------------------------------------------


def _plain_url(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


def query(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """One statement on a connection of its own (so a PostgreSQL restart cannot stale it)."""

    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(_plain_url(database_url), timeout=10)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    return asyncio.run(run())


def count(database_url: str, sql: str) -> int:
    """A count, or -1 while PostgreSQL does not answer (it may be restarting)."""
    try:
        return int(query(database_url, sql)[0][0])
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return -1


def outstanding(database_url: str) -> int:
    """Inbound rows not yet filed plus deliveries not yet delivered (-1: no answer)."""
    return count(
        database_url,
        "SELECT (SELECT count(*) FROM inbound_messages WHERE status = 'pending')"
        " + (SELECT count(*) FROM deliveries WHERE status <> 'delivered')",
    )


def _cluster() -> list[str]:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]


def postgres_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"], check=False).returncode == 0


def wait_postgres(limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not postgres_ready():
        assert time.monotonic() < deadline, f"PostgreSQL not ready {limit:g} s after a restart"
        time.sleep(0.2)


def ensure_postgres_up() -> None:
    """Whatever happened in the test, leave the machine's PostgreSQL running."""
    if postgres_ready():
        return
    subprocess.run([*_cluster(), "start"], check=False, capture_output=True, timeout=120)
    wait_postgres()


# -- the clients ------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients got: accepted (the only thing that counts), retried, and errors."""

    inbound: dict[str, str] = field(default_factory=dict)
    """Accepted inbound Message-ID (without <>) -> recipient."""
    outbound: dict[str, str] = field(default_factory=dict)
    """Accepted send's token (its Idempotency-Key, also in its X-Fault-Token header) -> id."""
    ambiguous_inbound: set[str] = field(default_factory=set)
    retries: Counter[str] = field(default_factory=Counter)
    replays: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def retry(self, kind: str) -> None:
        with self.lock:
            self.retries[kind] += 1


def inbound_message(n: int, run: str) -> tuple[str, str, bytes]:
    recipient = LOCAL_USERS[n % len(LOCAL_USERS)]
    message_id = f"in-{n}-{run}@remote.test"
    raw = (
        f"From: zed@remote.test\r\nTo: {recipient}\r\nSubject: inbound {n}\r\n"
        f"Message-ID: <{message_id}>\r\n\r\nMessage {n} of the fault run.\r\n"
    ).encode()
    return recipient, message_id, raw


def send_inbound(port: int, numbers: list[int], run: str, ledger: Ledger, deadline: float) -> None:
    """One SMTP client: a connection kept open, re-opened after any failure."""
    smtp: smtplib.SMTP | None = None
    try:
        for n in numbers:
            recipient, message_id, raw = inbound_message(n, run)
            while True:
                if time.monotonic() > deadline:
                    ledger.errors.append(f"inbound {n}: not accepted before the deadline")
                    return
                try:
                    if smtp is None:
                        smtp = smtplib.SMTP("127.0.0.1", port, timeout=60)
                        smtp.ehlo("client.remote.test")
                    smtp.sendmail("zed@remote.test", [recipient], raw)
                except smtplib.SMTPRecipientsRefused as exc:
                    code = next(iter(exc.recipients.values()))[0]
                    if code >= 500:
                        ledger.errors.append(f"inbound {n}: RCPT refused {exc.recipients}")
                        break
                    ledger.retry(f"smtp {code}")
                except smtplib.SMTPResponseException as exc:
                    if exc.smtp_code >= 500:
                        ledger.errors.append(f"inbound {n}: {exc.smtp_code} {exc.smtp_error!r}")
                        break
                    ledger.retry(f"smtp {exc.smtp_code}")
                except (OSError, smtplib.SMTPException) as exc:
                    # The reply to DATA may have been lost: we cannot know, so send again.
                    with ledger.lock:
                        ledger.ambiguous_inbound.add(message_id)
                    ledger.retry(f"smtp {type(exc).__name__}")
                    _close(smtp)
                    smtp = None
                    time.sleep(0.3)
                else:
                    with ledger.lock:
                        ledger.inbound[message_id] = recipient
                    break
                _close(smtp)
                smtp = None
                time.sleep(0.3)
    finally:
        _close(smtp)


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is None:
        return
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def send_outbound(
    base_url: str, token: str, numbers: list[int], run: str, ledger: Ledger, deadline: float
) -> None:
    """One API client; a failed POST is repeated with the same Idempotency-Key."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        for n in numbers:
            key = f"fault-{run}-{n}"
            body = {
                "to": [f"user{n % 10}@chaos.test"],
                "subject": f"out {n}",
                "text": "Hello.",
                "headers": {"X-Fault-Token": key},
            }
            while True:
                if time.monotonic() > deadline:
                    ledger.errors.append(f"outbound {n}: not accepted before the deadline")
                    return
                try:
                    response = client.post("/send", json=body, headers={"Idempotency-Key": key})
                except httpx.TransportError as exc:
                    ledger.retry(f"http {type(exc).__name__}")
                    time.sleep(0.3)
                    continue
                if response.status_code == 202:
                    with ledger.lock:
                        ledger.outbound[key] = response.json()["id"]
                        ledger.replays += response.headers.get("Idempotent-Replayed") == "true"
                    break
                if response.status_code >= 500 or response.status_code == 429:
                    ledger.retry(f"http {response.status_code}")
                    time.sleep(0.3)
                    continue
                ledger.errors.append(f"outbound {n}: {response.status_code} {response.text}")
                break


def split(numbers: range, ways: int) -> list[list[int]]:
    return [list(numbers[i::ways]) for i in range(ways)]


# -- the fixtures ---------------------------------------------------------------------------


@pytest.fixture
def database() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture
def dns() -> Iterator[Dnsmasq]:
    try:
        server = Dnsmasq()
        server.start(ZONE, probe="mx.chaos.test")
    except DnsmasqFailed as exc:
        require(False, str(exc))
        raise
    with server:
        yield server


@pytest.fixture
def chaos() -> Iterator[tuple[ChaosReceiver, int]]:
    receiver = ChaosReceiver(seed=20261124, key_header="X-Fault-Token")
    port = free_port((CHAOS_HOST,))
    controller = Controller(receiver, hostname=CHAOS_HOST, port=port, ready_timeout=10)
    controller.start()
    yield receiver, port
    controller.stop()


@pytest.fixture
def flushable() -> Iterator[tuple[redis.Redis, str]]:
    require_redis()
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    prefix = unique_prefix()
    yield client, prefix
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@dataclass
class Cluster:
    nodes: list[Platform]
    processes: dict[tuple[str, int], subprocess.Popen[bytes]]

    def restart(self, role: str, node: int) -> None:
        self.processes[role, node] = self.nodes[node].start_role(role)

    def kill(self, role: str, node: int) -> float:
        process = self.processes[role, node]
        process.send_signal(signal.SIGKILL)
        at = time.monotonic()
        process.wait(10)
        return at

    def signal(self, roles: tuple[str, ...], node: int, sig: signal.Signals) -> None:
        for role in roles:
            self.processes[role, node].send_signal(sig)


@pytest.fixture
def cluster(
    database: str,
    tmp_path: Path,
    moto_s3: MotoS3,
    dns: Dnsmasq,
    chaos: tuple[ChaosReceiver, int],
    flushable: tuple[redis.Redis, str],
) -> Iterator[Cluster]:
    """Two nodes, each with every role; the same settings, ports of their own."""
    env = {
        **moto_s3.env,
        "POSTROOM_BLOB_URL": f"s3://{moto_s3.new_bucket()}",
        "POSTROOM_REDIS_URL": REDIS_URL,
        "POSTROOM_REDIS_PREFIX": flushable[1],
        "POSTROOM_DNS_NAMESERVERS": dns.nameserver,
        "POSTROOM_DELIVERY_PORT": str(chaos[1]),
        "POSTROOM_DELIVERY_TLS": "off",
        "POSTROOM_DELIVERY_ATTEMPT_SECONDS": str(ATTEMPT_SECONDS),
        "POSTROOM_RETRY_FIRST_SECONDS": "0.5",
        "POSTROOM_RETRY_MAX_SECONDS": "2",
        "POSTROOM_QUEUE_LEASE_SECONDS": "5",
        "POSTROOM_SWEEP_INTERVAL_SECONDS": "1",
        "POSTROOM_SWEEP_AGE_SECONDS": "5",
        "POSTROOM_RATE_SEND_USER": "",
        "POSTROOM_RATE_SEND_IP": "",
        "POSTROOM_SHUTDOWN_GRACE_SECONDS": "3",
    }
    nodes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        nodes.append(Platform(tmp_path / name, database, extra_env=env))
    nodes[0].setup(DOMAIN, *SENDERS, *LOCAL_USERS)
    running = Cluster(nodes, {})
    try:
        # all at once: start-up is mostly waiting, and takes minutes one by one when loaded
        with ThreadPoolExecutor(len(ROLES) * 2) as pool:
            starts = [pool.submit(running.restart, r, i) for r in ROLES for i in (0, 1)]
            for started in starts:
                started.result()
        yield running
    finally:
        for node in nodes:
            node.stop()


# -- the test -------------------------------------------------------------------------------


@dataclass
class Faults:
    """When each fault happened (``time.monotonic()``), for placing duplicates in windows."""

    windows: list[tuple[str, float, float]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)

    def note(self, what: str, start: float, end: float | None = None, window: bool = True) -> None:
        """Log a fault; ``window``: a crash window (a duplicate close to it is explained)."""
        if window:
            self.windows.append((what, start, start if end is None else end))
        took = "" if end is None else f" ({end - start:.1f} s)"
        self.log.append(f"{start - self.began:6.1f} s  {what}{took}")

    def window_of(self, moment: float) -> str | None:
        for what, start, end in self.windows:
            if start - WINDOW_SLACK <= moment <= end + WINDOW_SLACK:
                return what
        return None


def wait_until(condition: Callable[[], bool], deadline: float, what: str) -> None:
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


@pytest.mark.timeout(DEADLINE_SECONDS + 150)
def test_two_of_each_role_survive_kills_flushall_and_a_postgres_restart(
    cluster: Cluster,
    database: str,
    chaos: tuple[ChaosReceiver, int],
    flushable: tuple[redis.Redis, str],
) -> None:
    receiver = chaos[0]
    began = time.monotonic()
    deadline = began + DEADLINE_SECONDS
    run = uuid.uuid4().hex[:8]
    ledger = Ledger()
    faults = Faults(began=began)
    tokens = [cluster.nodes[0].token(sender) for sender in SENDERS]
    gateways = [f"http://127.0.0.1:{node.http_port}/api/v1" for node in cluster.nodes]
    smtp_ports = [node.smtp_port for node in cluster.nodes]

    threads = [
        threading.Thread(
            target=send_inbound,
            args=(smtp_ports[i % 2], part, run, ledger, deadline),
            name=f"smtp-client-{i}",
        )
        for i, part in enumerate(split(range(INBOUND), CLIENT_THREADS))
    ] + [
        threading.Thread(
            target=send_outbound,
            args=(gateways[i % 2], tokens[i % len(tokens)], part, run, ledger, deadline),
            name=f"api-client-{i}",
        )
        for i, part in enumerate(split(range(OUTBOUND), CLIENT_THREADS))
    ]

    def filed() -> int:
        return count(database, "SELECT count(*) FROM inbound_messages WHERE status <> 'pending'")

    def delivered() -> int:
        return len(receiver.snapshot()[0])

    try:
        for thread in threads:
            thread.start()

        wait_until(lambda: filed() >= INBOUND * 0.15, deadline, "the processors to file mail")
        faults.note("SIGKILL processor", cluster.kill("processor", 0))
        cluster.restart("processor", 0)
        faults.log.append(f"{time.monotonic() - began:6.1f} s  processor running again")

        wait_until(lambda: delivered() >= OUTBOUND * 0.15, deadline, "deliveries to start")
        faults.note("SIGKILL smtp-out", cluster.kill("smtp-out", 0))
        cluster.restart("smtp-out", 0)
        faults.log.append(f"{time.monotonic() - began:6.1f} s  smtp-out running again")

        wait_until(lambda: len(ledger.inbound) >= INBOUND * 0.5, deadline, "inbound progress")
        client = flushable[0]
        client.flushall()
        # not a crash window: queue hints are lost, but leases and statuses are in the database
        faults.note("FLUSHALL", time.monotonic(), window=False)

        # apart from the other faults, so a duplicate's window is unambiguous
        mark = delivered() + OUTBOUND * 0.1
        wait_until(
            lambda: delivered() >= mark or not any(t.is_alive() for t in threads),
            deadline,
            "deliveries after the FLUSHALL",
        )
        if RESTART_POSTGRES:
            down = time.monotonic()
            subprocess.run([*_cluster(), "restart"], check=True, capture_output=True, timeout=120)
            wait_postgres()
            faults.note("PostgreSQL restart", down, time.monotonic())

        for thread in threads:
            thread.join(max(1.0, deadline - time.monotonic()))
        load_done = time.monotonic()
        assert not ledger.errors, ledger.errors[:10]

        wait_until(lambda: outstanding(database) == 0, deadline, "everything filed, delivered")
        drained_at = time.monotonic()

        probe(cluster, run, ledger, deadline, database)
    finally:
        ensure_postgres_up()
        print(
            f"\nafter {time.monotonic() - began:.1f} s: accepted {len(ledger.inbound)} inbound, "
            f"{len(ledger.outbound)} sends; filed {filed()}, delivered {delivered()}, "
            f"outstanding {outstanding(database)}; client errors {ledger.errors[:3]}\n"
            + "\n".join(faults.log)
        )
    ended = time.monotonic()
    time.sleep(ATTEMPT_SECONDS)  # an orphaned copy still on the wire is counted too

    # -- every inbound message in its recipient's Inbox, once ---------------------------
    rows = query(
        database,
        "SELECT m.message_id_header, u.address, b.role FROM messages m"
        " JOIN users u ON u.id = m.user_id JOIN mailboxes b ON b.id = m.mailbox_id"
        " WHERE u.address = ANY($1::text[])",
        LOCAL_USERS,
    )
    copies: Counter[tuple[str, str]] = Counter()
    for row in rows:
        copies[(str(row[0]).strip("<>"), f"{row[1]}/{row[2]}")] += 1
    inbound_dupes = {
        mid: n - 1 for (mid, _), n in copies.items() if n > 1 and mid in ledger.inbound
    }
    missing_in = [
        mid for mid, rcpt in ledger.inbound.items() if copies[(mid, f"{rcpt}/inbox")] == 0
    ]
    strays = [key for key in copies if key[0] not in ledger.inbound]

    # -- every send delivered; duplicates only in a crash window --------------------------
    accepted, failures = receiver.snapshot()
    missing_out = [token for token in ledger.outbound if accepted[token] == 0]
    outbound_dupes = {mid: n - 1 for mid, n in accepted.items() if n > 1}
    in_window = {mid: faults.window_of(receiver.first_accepted(mid)) for mid in outbound_dupes}
    unexplained_out = [mid for mid, window in in_window.items() if window is None]
    unexplained_in = [mid for mid in inbound_dupes if mid not in ledger.ambiguous_inbound]
    statuses = query(
        database,
        "SELECT 'delivery ' || status, count(*) FROM deliveries GROUP BY status"
        " UNION ALL SELECT 'recipient ' || status, count(*) FROM delivery_recipients"
        " GROUP BY status UNION ALL SELECT 'inbound ' || status, count(*)"
        " FROM inbound_messages GROUP BY status",
    )
    status_counts = {str(row[0]): int(row[1]) for row in statuses}
    alive = {f"{role}/{node}": p.poll() is None for (role, node), p in cluster.processes.items()}

    summary = (
        f"\nfault run: {len(ledger.inbound)}/{INBOUND + 4} inbound and "
        f"{len(ledger.outbound)}/{OUTBOUND + 4} sends accepted (with probes); "
        f"load {load_done - began:.1f} s, drained {drained_at - began:.1f} s, "
        f"total {ended - began:.1f} s\n"
        + "\n".join(faults.log)
        + f"\nclient retries {dict(ledger.retries)}, idempotent replays {ledger.replays}, "
        f"ambiguous inbound attempts {len(ledger.ambiguous_inbound)}\n"
        f"chaos failures injected {dict(failures)}\n"
        f"statuses {status_counts}\n"
        f"duplicates: inbound {sum(inbound_dupes.values())} "
        f"(outside the client's ambiguous window {len(unexplained_in)}), outbound "
        f"{sum(outbound_dupes.values())} (by window {dict(Counter(in_window.values()))})"
    )
    print(summary)

    assert all(alive.values()), f"a role died: {alive}{summary}"
    assert len(ledger.inbound) == INBOUND + 4 and len(ledger.outbound) == OUTBOUND + 4, summary
    assert not missing_in, f"{len(missing_in)} inbound not in the Inbox: {missing_in[:5]}{summary}"
    assert not strays, f"unexpected messages filed: {strays[:5]}{summary}"
    assert not unexplained_in, f"inbound filed twice: {unexplained_in[:5]}{summary}"
    assert not missing_out, f"{len(missing_out)} sends never arrived: {missing_out[:5]}{summary}"
    assert not unexplained_out, f"sent twice outside a crash window: {unexplained_out}{summary}"
    assert sum(failures.values()) > (OUTBOUND + 4) * 0.1, f"the chaos happened{summary}"
    finished = {"delivery delivered", "recipient delivered", "inbound done"}
    assert set(status_counts) <= finished, f"all delivered, nothing bounced{summary}"


def probe(cluster: Cluster, run: str, ledger: Ledger, deadline: float, database: str) -> None:
    """Two rounds of 2 inbound + 2 sends, each with one node's processor and smtp-out paused.

    The other node's then has to do the work alone, which shows each process recovered from
    the faults, not only one of each pair.
    """
    paused = ("processor", "smtp-out")
    token = cluster.nodes[0].token(SENDERS[0])
    for round_, idle in enumerate((1, 0)):
        cluster.signal(paused, idle, signal.SIGSTOP)
        try:
            node = cluster.nodes[1 - idle]
            first = INBOUND + 2 * round_
            send_inbound(node.smtp_port, [first, first + 1], run, ledger, deadline)
            gateway = f"http://127.0.0.1:{node.http_port}/api/v1"
            send_outbound(
                gateway,
                token,
                [OUTBOUND + 2 * round_, OUTBOUND + 2 * round_ + 1],
                run,
                ledger,
                deadline,
            )
            assert not ledger.errors, ledger.errors
            wait_until(
                lambda: outstanding(database) == 0,
                deadline,
                f"node {'ab'[1 - idle]}'s processor and smtp-out to handle the probes alone",
            )
        finally:
            cluster.signal(paused, idle, signal.SIGCONT)
