"""bench/realtime: connections held, one event fanned out to all, and SMTP 250 to push.

postroom runs as separate role processes (``postroom run realtime``, ``processor``,
``smtp-in``) on a fresh PostgreSQL database and Redis (a key prefix of this run's own), as in
production. Three measurements (issue 7 point 7):

1. **Connections held**: ``--connections`` (10 000) WebSocket clients of one user, opened from
   ``--client-processes`` processes on several loopback addresses, each holding its connection.
   The realtime process's RSS (``/proc/PID/status`` VmRSS) before and with them all open gives
   the total and the per-connection memory.
2. **Fan-out**: one change is committed (``record_change``) and published on the bus once; the
   latency of each connection is from the publish to the moment its client read the frame.
3. **SMTP 250 to push**: ``--messages`` (1000) messages sent over SMTP at ``--rate`` per second
   from one connection, while one WebSocket client listens; the latency of each message is from
   its ``250`` after DATA to its ``mail.new`` frame, so it covers the queue, the processor
   (parse, store, commit) and the bus. Then the same unpaced, for the record; each pass also
   gives the CPU time per message of each role, the figure a busy machine does not distort.

Targets: 10 000 connections in under 1 GB RSS, fan-out p99 under 1 s, 250-to-push p99 under
200 ms. They are reported, not asserted. Timestamps are ``time.monotonic()``, one clock for
every process of the machine.

    .venv/bin/python -m bench.realtime.run [--connections 10000] [--messages 1000] [--rate 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiosmtplib
from websockets.asyncio.client import connect

from bench.realtime.clients import hold
from bench.support import cpu_seconds, markdown_table, note, write_result
from bench.targets import Target, write_targets
from postroom.events import user_channel
from postroom.settings import Settings
from storage.registry import Storage, open_storage
from storage.repositories.accounts import find_user
from storage.repositories.tokens import issue_token
from storage.transaction import record_change
from tests.support.platform import Platform
from tests.support.redis import REDIS_URL, delete_prefix, require_redis, unique_prefix
from tests.support.services import postgres_database

DOMAIN = "bench.test"
USER = f"bob@{DOMAIN}"
ROLES = ("realtime", "processor", "smtp-in")
RATE = 10.0
"""SMTP messages per second for the 250-to-push target: what the processor files as they come
on this shared two-core machine (its CPU per message is in the table), so the figure is the
latency of a message, not the length of a backlog."""


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def closed_down(pid: int, files: int) -> None:
    """Wait (up to 2 min) until realtime has let the clients go, so closing them does not load
    the next measurement.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(120):
            while open_files(pid) > files + 10:  # noqa: ASYNC110 (another process's state)
                await asyncio.sleep(0.5)
    await asyncio.sleep(2)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    note(f"open files limit {hard} (was {soft}); role processes inherit it")


@contextmanager
def running_roles(args: argparse.Namespace) -> Iterator[tuple[Platform, dict[str, int]]]:
    """Realtime, processor and smtp-in processes; yields the platform and each role's pid."""
    require_redis()
    prefix = unique_prefix()
    env = {
        "POSTROOM_REDIS_URL": REDIS_URL,
        "POSTROOM_REDIS_PREFIX": prefix,
        "POSTROOM_REALTIME_MAX_CONNECTIONS_PER_USER": str(args.connections + 10),
        # 10 000 clients opened on a starved machine can take minutes; a pong late by more than
        # the default 20 s would close them mid-run, so the run pings less often.
        "POSTROOM_REALTIME_PING_INTERVAL_SECONDS": "60",
        "POSTROOM_REALTIME_PING_TIMEOUT_SECONDS": "60",
        "POSTROOM_HEALTH_PORT": "0",  # no health servers: nothing here asks them
    }
    with (
        tempfile.TemporaryDirectory(prefix="postroom-bench-") as folder,
        postgres_database() as url,
    ):
        platform = Platform(Path(folder), url, env)
        try:
            platform.setup(DOMAIN, USER)
            yield platform, {role: platform.start_role(role).pid for role in ROLES}
        finally:
            platform.stop()
            asyncio.run(delete_prefix(prefix))


def open_bench_storage(platform: Platform) -> Storage:
    return open_storage(
        Settings(
            data_dir=platform.data_dir,
            database_url=platform.database_url,
            redis_url=platform.env["POSTROOM_REDIS_URL"],
            redis_prefix=platform.env["POSTROOM_REDIS_PREFIX"],
        )
    )


async def user_and_token(store: Storage) -> tuple[str, str]:
    async with store.db.session() as session, session.begin():
        user = await find_user(session, USER)
        assert user is not None
        token, _ = await issue_token(session, user.id, ttl_seconds=3600)
        return user.id, token


# -- 1 and 2: connections held, one event fanned out ----------------------------------------


def start_clients(
    url: str, total: int, processes: int
) -> list[tuple[multiprocessing.process.BaseProcess, Connection]]:
    context = multiprocessing.get_context("spawn")
    started: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    share = -(-total // processes)
    for n in range(processes):
        count = min(share, total - n * share)
        if count <= 0:
            break
        source = f"127.0.0.{2 + n}"  # one source address each: ephemeral ports never run out
        parent, child = context.Pipe()
        process = context.Process(target=hold, args=(child, url, count, source), daemon=True)
        process.start()
        started.append((process, parent))
    return started


def expect(pipe: Connection, kind: str, timeout: float) -> tuple[Any, ...]:
    if not pipe.poll(timeout):
        raise RuntimeError(f"a client process sent no {kind!r} within {timeout:.0f} s")
    message: tuple[Any, ...] = pipe.recv()
    if message[0] != kind:
        raise RuntimeError(f"expected {kind!r} from a client process, got {message!r}")
    return message


async def publish_one(platform: Platform, user_id: str) -> float:
    """Commit one change, then publish it by itself; the monotonic time of the publish.

    The storage is opened here: a database connection pooled since the start, minutes ago
    while the clients connected, may have been cut meanwhile on a shared machine.
    """
    store = open_bench_storage(platform)
    try:
        async with store.db.session() as session, session.begin():
            message = {"id": secrets.token_hex(8), "mailbox": "inbox", "subject": "fan-out"}
            event = await record_change(session, user_id, "mail.new", {"message": message})
        began = time.monotonic()
        await store.bus.publish(user_channel(user_id), event)
    finally:
        await store.close()
    return began


async def fan_out(
    platform: Platform, pid: int, args: argparse.Namespace, user_id: str, token: str
) -> list[list[str]]:
    url = f"ws://127.0.0.1:{platform.realtime_port}/ws?token={token}"
    baseline, files_before = rss_bytes(pid), open_files(pid)
    cpu_at_start = cpu_seconds(pid)
    note(f"realtime RSS before clients: {baseline / 2**20:.1f} MiB; opening {args.connections}")
    began = time.monotonic()
    clients = start_clients(url, args.connections, args.client_processes)
    try:
        opened, retries, errors = 0, 0, []
        for _, pipe in clients:
            _, count, retried, first_errors = await asyncio.to_thread(
                expect, pipe, "connected", 900
            )
            opened += count
            retries += retried
            errors += first_errors
        took = time.monotonic() - began
        await asyncio.sleep(2)  # let the server settle (handshake buffers freed) first
        held = rss_bytes(pid)
        note(f"{opened} connections open in {took:.1f} s; RSS {held / 2**20:.1f} MiB")
        if errors:
            note(f"some connections failed: {errors}")

        for _, pipe in clients:
            pipe.send("listen")
        for _, pipe in clients:
            await asyncio.to_thread(expect, pipe, "listening", 120)
        cpu_opening = cpu_seconds(pid) - cpu_at_start
        sent = await publish_one(platform, user_id)
        arrivals: list[float] = []
        for _, pipe in clients:
            arrivals += (await asyncio.to_thread(expect, pipe, "received", 300))[1]
        cpu_fan_out = cpu_seconds(pid) - cpu_at_start - cpu_opening
    finally:
        for _, pipe in clients:
            pipe.send("stop")
        for process, _ in clients:
            await asyncio.to_thread(process.join, 60)
        await closed_down(pid, files_before)
    latencies = [arrival - sent for arrival in arrivals]
    per_connection = (held - baseline) / max(opened, 1)
    under_1g, all_received = held < 2**30, len(latencies) == opened
    rows = [
        ["connections held", f"{opened}", f"{args.connections}", yes(opened == args.connections)],
        ["realtime RSS, idle", f"{baseline / 2**20:.1f} MiB", "", ""],
        [f"realtime RSS, {opened} held", f"{held / 2**20:.1f} MiB", "< 1024 MiB", yes(under_1g)],
        ["memory per connection", f"{per_connection / 1024:.1f} KiB", "", ""],
        ["time to open them all", f"{took:.1f} s", "", ""],
        ["connection attempts retried (server busy)", f"{retries}", "", ""],
        ["realtime CPU per connection opened", ms(cpu_opening / max(opened, 1)), "", ""],
        ["fan-out: frames received", f"{len(latencies)}", f"{opened}", yes(all_received)],
    ]
    if latencies:
        p99 = percentile(latencies, 0.99)
        rows += [
            ["fan-out latency p50", ms(percentile(latencies, 0.5)), "", ""],
            ["fan-out latency p99", ms(p99), "< 1000 ms", yes(p99 < 1.0)],
            ["fan-out latency max", ms(max(latencies)), "", ""],
            ["realtime CPU for the fan-out", ms(cpu_fan_out), "", ""],
        ]
    return rows


def yes(met: bool) -> str:
    return "met" if met else "MISSED"


# -- 3: SMTP 250 to push ---------------------------------------------------------------------


def raw_message(n: int, run: str) -> bytes:
    return (
        f"From: zed@remote.test\r\nTo: {USER}\r\nSubject: rt {run} {n}\r\n"
        f"Message-ID: <rt-{run}-{n}@remote.test>\r\n\r\nmessage {n} of the realtime bench\r\n"
    ).encode()


@dataclass
class Pushes:
    """One pass of SMTP-to-push: per message, its 250 and its frame, and the roles' CPU."""

    accepted: dict[str, float] = field(default_factory=dict)
    pushed: dict[str, float] = field(default_factory=dict)
    sending: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    def latencies(self) -> list[float]:
        return [self.pushed[s] - self.accepted[s] for s in self.accepted if s in self.pushed]


async def push_pass(
    platform: Platform, pids: dict[str, int], token: str, messages: int, rate: float | None
) -> Pushes:
    """Send ``messages`` at ``rate`` per second (None: as fast as one connection goes)."""
    run = secrets.token_hex(3)
    result = Pushes()
    url = f"ws://127.0.0.1:{platform.realtime_port}/ws?token={token}"
    cpu_before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    async with connect(url, compression=None, open_timeout=120) as ws:
        await ws.recv()  # ready

        async def listen() -> None:
            async for text in ws:
                now = time.monotonic()
                frame = json.loads(text)
                if frame.get("type") == "mail.new" and frame["message"]["subject"].startswith(
                    f"rt {run} "
                ):
                    result.pushed[frame["message"]["subject"]] = now
                    if len(result.pushed) == messages:
                        return

        listener = asyncio.create_task(listen())
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=platform.smtp_port, start_tls=False)
        began = time.monotonic()
        async with smtp:
            for n in range(messages):
                await smtp.sendmail("zed@remote.test", [USER], raw_message(n, run))
                result.accepted[f"rt {run} {n}"] = time.monotonic()
                pause = began + (n + 1) / rate - time.monotonic() if rate else 0
                if pause > 0:
                    await asyncio.sleep(pause)
        result.sending = time.monotonic() - began
        try:
            await asyncio.wait_for(listener, 300)
        except TimeoutError:
            note(f"only {len(result.pushed)} of {messages} pushes arrived")
    result.cpu = {role: cpu_seconds(pid) - cpu_before[role] for role, pid in pids.items()}
    return result


def push_rows(label: str, pushes: Pushes, messages: int, target: bool) -> list[list[str]]:
    latencies = pushes.latencies()
    rate = f"{messages / pushes.sending:.0f}/s" if pushes.sending else "?"
    rows = [
        [f"{label}: SMTP messages (rate)", f"{messages} ({rate})", "", ""],
        [
            f"{label}: pushes received",
            f"{len(latencies)}",
            f"{messages}",
            yes(len(latencies) == messages),
        ],
    ]
    if latencies:
        p99 = percentile(latencies, 0.99)
        rows += [
            [f"{label}: 250-to-push p50", ms(percentile(latencies, 0.5)), "", ""],
            [
                f"{label}: 250-to-push p99",
                ms(p99),
                "< 200 ms" if target else "",
                yes(p99 < 0.2) if target else "",
            ],
            [f"{label}: 250-to-push max", ms(max(latencies)), "", ""],
        ]
    per_message = ", ".join(
        f"{role} {seconds / max(messages, 1) * 1000:.1f}" for role, seconds in pushes.cpu.items()
    )
    rows.append([f"{label}: CPU per message (ms)", per_message, "", ""])
    return rows


async def smtp_to_push(
    platform: Platform, pids: dict[str, int], args: argparse.Namespace, token: str
) -> list[list[str]]:
    """The target at the stated ``--rate``; then, for the record, the same unpaced.

    Unpaced, messages come faster than the processor files them on a shared two-core machine,
    so the figure measures the backlog (throughput), not the latency of one message.
    """
    paced = await push_pass(platform, pids, token, args.messages, args.rate)
    rows = push_rows(f"at {args.rate:g}/s", paced, args.messages, target=True)
    note("paced 250-to-push done:\n" + markdown_table(["measure", "value", "target", ""], rows))
    if args.unpaced:
        unpaced = await push_pass(platform, pids, token, args.messages, None)
        rows += push_rows("unpaced", unpaced, args.messages, target=False)
    return rows


# -- the run ---------------------------------------------------------------------------------


async def measure(
    platform: Platform, pids: dict[str, int], args: argparse.Namespace
) -> list[list[str]]:
    store = open_bench_storage(platform)
    try:
        user_id, token = await user_and_token(store)
    finally:
        await store.close()
    rows = await fan_out(platform, pids["realtime"], args, user_id, token)
    note("fan-out done:\n" + markdown_table(["measure", "value", "target", ""], rows))
    try:
        rows += await smtp_to_push(platform, pids, args, token)
    except Exception as exc:
        note(f"SMTP to push failed: {exc!r}")
        rows.append(["250-to-push", f"failed: {exc!r}", "", ""])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime.run", description=__doc__)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=RATE, help="SMTP messages per second")
    parser.add_argument(
        "--no-unpaced",
        dest="unpaced",
        action="store_false",
        help="skip the second, unpaced pass of SMTP to push",
    )
    args = parser.parse_args(argv)
    raise_file_limit()
    load_before = os.getloadavg()
    with running_roles(args) as (platform, pids):
        rows = asyncio.run(measure(platform, pids, args))
    load_after = os.getloadavg()
    table = markdown_table(["measure", "value", "target", ""], rows)
    markdown = (
        "## realtime\n\n"
        f"`.venv/bin/python -m bench.realtime.run --connections {args.connections} "
        f"--messages {args.messages} --rate {args.rate:g}`: roles as separate processes on "
        "PostgreSQL and Redis; clients from "
        f"{args.client_processes} processes.\n\n{table}\n"
        f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        f"({os.cpu_count()} CPUs).\n"
    )
    print(markdown)
    note(f"written to {write_result('realtime', markdown)}")
    write_targets(
        "realtime",
        [
            Target(7, "realtime", measure, value, wanted, verdict == "met")
            for measure, value, wanted, verdict in rows
            if verdict in ("met", "MISSED")
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
