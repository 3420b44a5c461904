"""bench/inbound: how fast postroom's MX port durably accepts mail, and how soon it is readable.

Postfix's ``smtp-source`` (a C load generator nobody here wrote) opens ``--sessions`` SMTP
sessions at once and sends ``--messages`` messages of ``--size`` bytes of payload over them,
one recipient each, each session reused for message after message (``-d``; ``--reconnect``
opens a connection per message instead). The same load goes, in the same run, to:

- **aiosmtpd sink** (``bench/inbound/sink.py``): aiosmtpd answering 250 to everything and
  storing nothing: what Python, asyncio and aiosmtpd alone cost, the ceiling for postroom.
- **Postfix**: a private Postfix instance (``bench.support.PostfixDiscard``) whose smtpd writes
  and fsyncs each message into its own queue before the 250, then discards it.
- **postroom**, ``postroom up`` on the embedded defaults (SQLite, blob files, the queue in a
  table) and on PostgreSQL + Redis (a fresh database on the machine's PostgreSQL, queues in
  Redis Streams under a prefix of its own, removed afterwards). Each 250 means the message is
  durable (blob fsynced, row committed). Also measured: the time from the first message sent
  until all of them are listed in the recipient's Inbox through ``GET /api/v1/mailboxes``.

Rates are messages over smtp-source's wall time (start to last 250 and QUIT). Targets
(issue 3 point 15): postroom at least 0.8x the aiosmtpd sink and at least 1.2x Postfix, and all
messages visible through the API within 2x the accept time. Reported, never asserted.

    .venv/bin/python -m bench.inbound.run [--messages 5000] [--sessions 20] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import redis

from bench.support import (
    RESULTS,
    Dnsmasq,
    PostfixDiscard,
    PostfixRelay,
    PostfixUnavailable,
    cpu_seconds,
    free_port,
    markdown_table,
    note,
    running_postroom,
    write_result,
)
from bench.targets import Target, ratio_target, write_targets
from tests.support.dnsmasq import program
from tests.support.platform import Platform

DOMAIN = "bench.test"
RECIPIENT = f"bob@{DOMAIN}"
SENDER = "load@sender.test"
REDIS_URL = os.environ.get("POSTROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STALL_SECONDS = 120.0
"""Give up waiting for messages to show in the API when none appeared for this long."""

SETUPS = {
    "embedded": "postroom, embedded defaults (SQLite, files, table queue)",
    "postgresql-redis": "postroom, PostgreSQL + Redis Streams",
}


@dataclass
class Result:
    system: str
    messages: int
    seconds: float | None
    """smtp-source's wall time; None when it failed (see notes)."""
    visible: float | None = None
    """Seconds from the first message sent until all were listed in the Inbox."""
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return self.messages / self.seconds if self.seconds else None


# -- the load -------------------------------------------------------------------------------


def smtp_source_command(port: int, args: argparse.Namespace) -> list[str]:
    binary = program("smtp-source")
    if binary is None:
        raise SystemExit("smtp-source is not installed (Debian: postfix)")
    return [
        binary,
        *([] if args.reconnect else ["-d"]),
        "-s",
        str(args.sessions),
        "-m",
        str(args.messages),
        "-l",
        str(args.size),
        "-f",
        SENDER,
        "-t",
        RECIPIENT,
        "-M",
        "client.sender.test",
        "-S",
        "bench inbound",
        f"127.0.0.1:{port}",
    ]


async def send_load(port: int, args: argparse.Namespace) -> tuple[float, float, str | None]:
    """Run smtp-source; (start, end, None) or (start, end, why it failed)."""
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *smtp_source_command(port, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    ended = time.perf_counter()
    if process.returncode != 0:
        text = output.decode(errors="replace").strip().splitlines()
        return began, ended, f"smtp-source exited {process.returncode}: {' | '.join(text[-3:])}"
    return began, ended, None


# -- the baselines --------------------------------------------------------------------------


def sink_run(args: argparse.Namespace) -> Result:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.inbound.sink", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        if b"listening" not in ready:
            raise SystemExit(f"the aiosmtpd sink did not start: {ready!r}")
        cpu_before = cpu_seconds(process.pid)
        began, ended, failed = asyncio.run(send_load(port, args))
        cpu = cpu_seconds(process.pid) - cpu_before
    finally:
        process.terminate()
        process.wait(timeout=10)
    notes = [f"the sink used {cpu:.1f} s of CPU ({1000 * cpu / args.messages:.2f} ms a message)"]
    if failed:
        notes.append(failed)
    return Result(
        "aiosmtpd sink (stores nothing)",
        args.messages,
        None if failed else ended - began,
        None,
        notes,
    )


def postfix_run(args: argparse.Namespace) -> Result:
    with PostfixDiscard() as postfix:
        began, ended, failed = asyncio.run(send_load(postfix.port, args))
        discarded = _wait_for_discards(postfix, args.messages)
    notes = [f"{discarded} of {args.messages} messages reached the discard transport"]
    if failed:
        notes.append(failed)
    return Result(
        f"Postfix {postfix.version} smtpd into its queue (discard transport)",
        args.messages,
        None if failed else ended - began,
        None,
        notes,
    )


def _wait_for_discards(postfix: PostfixRelay, goal: int, patience: float = 30.0) -> int:
    """How many messages Postfix's log says were discarded, once all were or it stalls."""
    count, progressed = -1, time.monotonic()
    while time.monotonic() - progressed < patience:
        now = postfix.log().count("status=sent (")
        if now >= goal:
            return now
        if now != count:
            count, progressed = now, time.monotonic()
        time.sleep(0.2)
    return count


# -- postroom -------------------------------------------------------------------------------


@contextmanager
def redis_prefix(setup: str) -> Iterator[dict[str, str]]:
    """Settings for the setup; for Redis, a key prefix of its own, emptied afterwards."""
    if setup != "postgresql-redis":
        yield {}
        return
    prefix = f"postroom-bench-{secrets.token_hex(4)}:"
    try:
        yield {"POSTROOM_REDIS_URL": REDIS_URL, "POSTROOM_REDIS_PREFIX": prefix}
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


async def inbox_total(api: httpx.AsyncClient) -> int:
    response = await api.get("/mailboxes")
    response.raise_for_status()
    for mailbox in response.json()["items"]:
        if mailbox["role"] == "inbox":
            return int(mailbox["total"])
    raise RuntimeError("the recipient has no Inbox")


async def measure_postroom(
    platform: Platform, token: str, args: argparse.Namespace
) -> tuple[float, float, str | None, float | None, int]:
    """(start, accepted, failure, all visible at, count visible)."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{platform.http_port}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ) as api:
        load = asyncio.create_task(send_load(platform.smtp_port, args))
        began = time.perf_counter()
        seen, progressed, visible_at = 0, began, None
        while True:
            await asyncio.sleep(0.25)
            now_seen = await inbox_total(api)
            now = time.perf_counter()
            if now_seen >= args.messages:
                seen, visible_at = now_seen, now
                break
            if now_seen != seen:
                seen, progressed = now_seen, now
            elif load.done() and now - progressed > STALL_SECONDS:
                break
            if load.done() and load.result()[2] is not None and now - progressed > 10:
                break  # smtp-source failed; what was accepted has had time to show
        began, ended, failed = await load
    return began, ended, failed, visible_at, seen


def postroom_run(setup: str, dns: Dnsmasq, args: argparse.Namespace) -> Result:
    database = "sqlite" if setup == "embedded" else "postgresql"
    with redis_prefix(setup) as env:
        env["POSTROOM_DNS_NAMESERVERS"] = dns.nameserver
        with running_postroom(env, database, DOMAIN, [RECIPIENT]) as platform:
            token = platform.token(RECIPIENT)
            assert platform.process is not None
            pid = platform.process.pid
            profiler = start_profile(pid, setup) if args.profile else None
            cpu_before = cpu_seconds(pid)
            try:
                began, ended, failed, visible_at, seen = asyncio.run(
                    measure_postroom(platform, token, args)
                )
            finally:
                stop_profile(profiler)
            cpu = cpu_seconds(pid) - cpu_before
            log = platform.log()
    notes = [
        f"postroom used {cpu:.1f} s of CPU from the first message to all visible"
        f" ({1000 * cpu / args.messages:.2f} ms a message)"
    ]
    if failed:
        notes.append(failed)
    refused = len(re.findall(r"could not store", log))
    if refused:
        notes.append(f"{refused} log lines say a message could not be stored")
    swept = sum(int(n) for n in re.findall(r"sweeper re-enqueued (\d+) incoming", log))
    if swept:
        notes.append(
            f"the sweeper re-enqueued {swept} incoming jobs (rows pending longer than"
            " POSTROOM_SWEEP_AGE_SECONDS, which a backlog makes every queued row)"
        )
    if visible_at is None:
        notes.append(f"only {seen} of {args.messages} became visible; gave up waiting")
    return Result(
        SETUPS[setup],
        args.messages,
        None if failed else ended - began,
        None if visible_at is None else visible_at - began,
        notes,
    )


def start_profile(pid: int, setup: str) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if py_spy is None:
        note("--profile: py-spy is not installed (pip install py-spy); running without")
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = os.environ.get("BENCH_PROFILE_FORMAT") == "raw"
    output = RESULTS / f"inbound-{setup}.{'txt' if raw else 'svg'}"
    note(f"profiling postroom (pid {pid}) into {output}")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "100",
            *(["--format", "raw"] if raw else []),
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profile(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its output and exits
        profiler.wait(timeout=60)


# -- the report -----------------------------------------------------------------------------


def ratio(result: Result, base: Result | None) -> str:
    if result.rate is None or base is None or base.rate is None:
        return "-"
    return f"{result.rate / base.rate:.2f}x"


def targets(postrooms: Sequence[Result], sink: Result, postfix: Result | None) -> list[Target]:
    """Issue 3 point 15: 0.8x the aiosmtpd sink, 1.2x Postfix, all visible within 2x."""
    measured = []
    for result in postrooms:
        base = postfix.rate if postfix else None
        measured += [
            ratio_target(
                3,
                "inbound",
                f"{result.system} vs aiosmtpd sink",
                result.rate,
                sink.rate,
                0.8,
                "msg/s",
            ),
            ratio_target(
                3, "inbound", f"{result.system} vs Postfix", result.rate, base, 1.2, "msg/s"
            ),
        ]
        if result.seconds and result.visible is not None:
            took = result.visible / result.seconds
            measured.append(
                Target(
                    3,
                    "inbound",
                    f"{result.system}: all visible / accept time",
                    f"{took:.2f}x",
                    "≤ 2x",
                    took <= 2,
                )
            )
        else:
            measured.append(
                Target(
                    3,
                    "inbound",
                    f"{result.system}: all visible / accept time",
                    "not measured",
                    "≤ 2x",
                    None,
                )
            )
    return measured


def report(
    results: Sequence[Result],
    sink: Result,
    postfix: Result | None,
    postfix_missing: str | None,
    postrooms: Sequence[Result],
    args: argparse.Namespace,
    load: tuple[float, float],
) -> str:
    rows = []
    for result in results:
        visible = "-"
        if result in postrooms:
            visible = f"{result.visible:.2f}" if result.visible is not None else "not all"
        rows.append(
            [
                result.system,
                f"{result.seconds:.2f}" if result.seconds else "failed",
                f"{result.rate:.0f}" if result.rate else "-",
                ratio(result, sink),
                ratio(result, postfix),
                visible,
            ]
        )
    if postfix_missing:
        rows.append([f"Postfix: unavailable ({postfix_missing})", "", "", "", "", ""])
    table = markdown_table(
        ["system", "accept s", "msgs/s", "vs aiosmtpd sink", "vs Postfix", "all visible s"], rows
    )

    def target(result: Result, name: str, base: Result | None, wanted: float) -> str:
        if base is None or base.rate is None or result.rate is None:
            return f"- {result.system} ≥ {wanted}x {name}: not measured"
        got = result.rate / base.rate
        return (
            f"- {result.system} ≥ {wanted}x {name}: {got:.2f}x,"
            f" **{'met' if got >= wanted else 'missed'}**"
        )

    def visibility(result: Result) -> str:
        if result.seconds is None or result.visible is None:
            return f"- {result.system}, all visible within 2x the accept time: not measured"
        got = result.visible / result.seconds
        return (
            f"- {result.system}, all visible within 2x the accept time: {got:.2f}x,"
            f" **{'met' if got <= 2 else 'missed'}**"
        )

    targets = []
    for result in postrooms:
        targets += [
            target(result, "the aiosmtpd sink", sink, 0.8),
            target(result, "Postfix", postfix, 1.2),
            visibility(result),
        ]
    notes = [f"- {result.system}: {text}" for result in results for text in result.notes]
    sessions = "a new connection per message" if args.reconnect else "each session reused"
    return "\n".join(
        [
            "## inbound: durable SMTP accept, against a bare aiosmtpd sink and Postfix",
            "",
            f"`smtp-source` sends {args.messages} messages with {args.size} bytes of payload"
            f" (about {args.size + 160} bytes with headers), one recipient each, over"
            f" {args.sessions} parallel sessions ({sessions}). Accept time is smtp-source's"
            " wall time; 'all visible' runs from the first message sent until the Inbox lists"
            f" all of them through the API. {os.cpu_count()} CPUs, load average"
            f" {load[0]:.1f} before and {load[1]:.1f} after.",
            "",
            table,
            "Targets (issue 3 point 15), reported, not asserted:",
            "",
            *targets,
            "",
            *(["Notes:", "", *notes, ""] if notes else []),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inbound.run", description=__doc__)
    parser.add_argument("--messages", type=int, default=5000, help="messages to send (5000)")
    parser.add_argument("--sessions", type=int, default=20, help="parallel sessions (20)")
    parser.add_argument("--size", type=int, default=2048, help="payload bytes a message (2048)")
    parser.add_argument(
        "--reconnect", action="store_true", help="a new connection for every message"
    )
    parser.add_argument(
        "--setups",
        default=",".join(SETUPS),
        help=f"postroom setups, comma-separated: {', '.join(SETUPS)} (all)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy profile of postroom into bench/results (BENCH_PROFILE_FORMAT=raw: text)",
    )
    args = parser.parse_args(argv)
    setups = [name for name in args.setups.split(",") if name]
    if unknown := sorted(set(setups) - set(SETUPS)):
        parser.error(f"unknown setup {', '.join(unknown)}; there are {', '.join(SETUPS)}")

    load_before = os.getloadavg()[0]
    note(f"aiosmtpd sink: {args.messages} messages over {args.sessions} sessions")
    sink = sink_run(args)
    postfix: Result | None = None
    postfix_missing: str | None = None
    note("Postfix: a private instance accepting into its queue")
    try:
        postfix = postfix_run(args)
    except PostfixUnavailable as exc:
        postfix_missing = str(exc)
        note(f"Postfix: unavailable ({exc})")
    postrooms = []
    with Dnsmasq() as dns:
        dns.start(["--host-record=probe.dns.test,127.0.0.9"], probe="probe.dns.test")
        for setup in setups:
            note(f"{SETUPS[setup]}: {args.messages} messages, then waiting for the API")
            postrooms.append(postroom_run(setup, dns, args))
    results = [sink, *([postfix] if postfix else []), *postrooms]
    load = (load_before, os.getloadavg()[0])
    markdown = report(results, sink, postfix, postfix_missing, postrooms, args, load)
    print(markdown)
    note(f"written to {write_result('inbound', markdown)}")
    write_targets("inbound", targets(postrooms, sink, postfix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
