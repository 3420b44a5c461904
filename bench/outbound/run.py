"""bench/outbound: how fast postroom delivers mail queued through its API.

N messages of about 2 KB are posted to ``POST /api/v1/send``, each to a recipient at
``bench.test``, whose MX (served by dnsmasq) is Postfix's ``smtp-sink`` on 127.0.0.2. In the
same run, to the same sink, over the same number of connections:

- **aiosmtplib loop**: the same messages sent by a plain loop of aiosmtplib clients, each
  connection reused for message after message. Nothing is stored, so this is the ceiling of
  the client side (Python, asyncio, aiosmtplib) on this machine.
- **postroom, API to delivered** (``postroom up``): N over the time from the first POST to the
  sink having all N; bounded by the API's enqueue rate, reported as its own row.
- **postroom smtp-out alone**: the same messages queued through the API with only the gateway
  running, then ``postroom run smtp-out`` started: the delivery rate, from the first message
  the sink got to the last (the worker's start-up is in the notes). The targets judge this.
- **Postfix**: a private Postfix instance (Debian defaults, its own queue in a temporary
  directory) takes the same messages over SMTP and relays them to the sink; timed from the
  first message handed to it to the sink having all N.

postroom runs with 64 deliveries in flight and at most ``--connections`` (8) connections to
the MX host, what an operator of a busy relay would configure (the defaults are 8 and 4).

Targets (issue 4 point 13): postroom at least 0.7x the aiosmtplib ceiling and at least 1.0x
Postfix. They are reported, not asserted: the run exits 0 either way.

    .venv/bin/python -m bench.outbound.run [--messages 5000] [--connections 8]
        [--delivery-concurrency 64] [--database sqlite|postgresql]
        [--systems api,alone,postfix] [--profile [flamegraph|raw]]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.support import (
    RESULTS,
    Dnsmasq,
    Message,
    PostfixRelay,
    PostfixUnavailable,
    SmtpSink,
    _database_url,
    cpu_seconds,
    markdown_table,
    note,
    running_postroom,
    smtp_send_all,
    write_result,
)
from bench.targets import ratio_target, write_targets
from tests.support.platform import Platform

SINK = "127.0.0.2"
DOMAIN = "bench.test"
SENDER_DOMAIN = "sender.test"
SENDER = f"bench@{SENDER_DOMAIN}"
UNLIMITED = "100000000/minute"
STALL_SECONDS = 120.0
"""Give up waiting for the sink when no message arrived for this long."""

LINE = "The quick brown fox jumps over the lazy dog while the queue keeps moving. "


@dataclass
class Result:
    system: str
    messages: int
    seconds: float | None
    """None: not all messages arrived (see ``delivered``)."""
    delivered: int
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        return self.messages / self.seconds if self.seconds else None


def make_messages(count: int, size: int) -> list[Message]:
    """``count`` messages whose RFC 5322 form is about ``size`` bytes."""
    sample = Message(SENDER, f"rcpt0@{DOMAIN}", "bench message 0", "")
    headers = len(sample.as_bytes("mx.postroom.test"))
    body_lines = max(1, (size - headers) // len(LINE + "\n"))
    text = "\n".join(f"{n:04d} {LINE}"[: len(LINE)] for n in range(body_lines)) + "\n"
    return [Message(SENDER, f"rcpt{i}@{DOMAIN}", f"bench message {i}", text) for i in range(count)]


# -- the baseline ---------------------------------------------------------------------------


async def aiosmtplib_loop(sink: SmtpSink, messages: list[Message], connections: int) -> Result:
    raw = [(m.sender, m.recipient, m.as_bytes("client.bench.test")) for m in messages]
    goal = sink.count + len(messages)
    began = time.perf_counter()
    await smtp_send_all(sink.address, sink.port, raw, connections)
    done = await sink.wait_for(goal, STALL_SECONDS)
    return Result(
        f"aiosmtplib loop, {connections} connections (client-side ceiling)",
        len(messages),
        None if done is None else done - began,
        len(messages) - (goal - sink.count),
    )


# -- postroom -------------------------------------------------------------------------------


@dataclass
class Posted:
    accepted: int = 0
    throttled: int = 0
    refused: list[str] = field(default_factory=list)
    seconds: float = 0.0


async def post_all(
    platform: Platform, token: str, messages: list[Message], concurrency: int, posted: Posted
) -> None:
    """POST every message to /api/v1/send from ``concurrency`` clients; 429s are retried."""
    waiting = deque(messages)
    began = time.perf_counter()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{platform.http_port}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=120,
    ) as client:

        async def post_one(message: Message) -> None:
            while True:
                try:
                    response = await client.post("/send", json=message.as_json())
                except httpx.TransportError as exc:
                    # not retried: the server may have taken it before the link broke
                    posted.refused.append(f"{type(exc).__name__}: {exc}")
                    return
                if response.status_code != 429:
                    break
                posted.throttled += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            if response.status_code == 202:
                posted.accepted += 1
            else:
                posted.refused.append(f"{response.status_code} {response.text[:200]}")

        async def one_client() -> None:
            while waiting:
                await post_one(waiting.popleft())

        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(one_client())
    posted.seconds = time.perf_counter() - began


async def show_progress(posted: Posted, sink: SmtpSink, goal: int) -> None:
    """Every 30 s, how far the POSTs and the deliveries have got (a full run takes a while)."""
    began = time.perf_counter()
    while True:
        await asyncio.sleep(30)
        note(
            f"postroom: {time.perf_counter() - began:.0f} s: {posted.accepted} POSTs accepted,"
            f" {sink.count - goal} delivered"
        )


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_profile(pid: int, raw: bool, name: str) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if py_spy is None:
        note("--profile: py-spy is not installed (pip install py-spy); running without")
        return None
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = RESULTS / f"outbound-{name}.{'txt' if raw else 'svg'}"
    note(f"profiling postroom (pid {pid}) into {output}")
    formats = ["--format", "raw"] if raw else []
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "100", *formats, "--output", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profile(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)


def _postroom_env(sink: SmtpSink, dns: Dnsmasq, args: argparse.Namespace) -> dict[str, str]:
    return {
        "POSTROOM_DNS_NAMESERVERS": dns.nameserver,
        "POSTROOM_DELIVERY_PORT": str(sink.port),
        # what an operator of a busy relay configures: many deliveries in flight (each also
        # waits on the database and the blob store), at most --connections to the one MX host
        "POSTROOM_DELIVERY_CONCURRENCY": str(args.delivery_concurrency),
        "POSTROOM_DELIVERY_CONNECTIONS_PER_HOST": str(args.connections),
        # the API's per-user and per-IP send limits protect real users; the bench is one
        # user sending thousands
        "POSTROOM_RATE_SEND_USER": UNLIMITED,
        "POSTROOM_RATE_SEND_IP": UNLIMITED,
    }


def postroom_run(
    sink: SmtpSink,
    dns: Dnsmasq,
    messages: list[Message],
    args: argparse.Namespace,
) -> tuple[Result, Result]:
    """The delivered rate and, as a second row, the API enqueue rate (202s per second)."""
    env = _postroom_env(sink, dns, args)
    with running_postroom(env, args.database, SENDER_DOMAIN, [SENDER]) as platform:
        token = platform.token(SENDER)
        assert platform.process is not None
        pid = platform.process.pid
        profiler = start_profile(pid, args.profile == "raw", "postroom") if args.profile else None
        cpu_before, own_before = cpu_seconds(pid), own_cpu_seconds()
        goal = sink.count

        posted = Posted()

        async def measure() -> tuple[float, float | None]:
            progress = asyncio.create_task(show_progress(posted, sink, goal))
            began = time.perf_counter()
            await post_all(platform, token, messages, args.api_concurrency, posted)
            done = await sink.wait_for(goal + posted.accepted, STALL_SECONDS)
            progress.cancel()
            return began, done

        try:
            began, done = asyncio.run(measure())
            cpu = cpu_seconds(pid) - cpu_before
        finally:
            stop_profile(profiler)
        own = own_cpu_seconds() - own_before
        log = platform.log()
    delivered = sink.count - goal
    seconds = None if done is None or posted.refused else done - began
    notes = [
        f"postroom used {cpu:.1f} s of CPU ({1000 * cpu / max(delivered, 1):.1f} ms a message);"
        f" the API client and sink reader {own:.1f} s",
    ]
    if posted.refused:
        notes.append(f"{len(posted.refused)} POSTs refused, first: {posted.refused[0]}")
    if posted.throttled:
        notes.append(f"{posted.throttled} POSTs answered 429 and were retried")
    deferred = sum(" deferred " in line for line in log.splitlines())
    if deferred:
        notes.append(f"{deferred} log lines mention a deferred delivery")
    swept = sum(int(n) for n in re.findall(r"re-enqueued (\d+) outgoing", log))
    if swept:
        notes.append(f"the sweeper re-enqueued {swept} outgoing jobs (work due for over a minute)")
    if done is None:
        notes.append(f"only {delivered} of {posted.accepted} arrived; gave up waiting")
    delivery = Result(
        f"postroom, {args.connections} delivery connections (API to delivered)",
        len(messages),
        seconds,
        delivered,
        notes,
    )
    enqueue = Result(
        f"postroom API enqueue only ({args.api_concurrency} concurrent POSTs)",
        posted.accepted,
        posted.seconds,
        posted.accepted,
    )
    return delivery, enqueue


def delivery_only_run(
    sink: SmtpSink, dns: Dnsmasq, messages: list[Message], args: argparse.Namespace
) -> Result:
    """smtp-out alone: the messages are queued through the API first (only the gateway runs),
    then ``postroom run smtp-out`` starts and drains the queue: the delivery side without the
    API. Timed from the first message the sink got to the last (the delivery rate the targets
    are about); the time from the worker's start, process start-up included, is in the notes.
    """
    env = {**_postroom_env(sink, dns, args)}
    with (
        tempfile.TemporaryDirectory(prefix="postroom-bench-") as folder,
        _database_url(args.database, Path(folder)) as url,
    ):
        platform = Platform(Path(folder), url)
        platform.env.update(env)
        platform.setup(SENDER_DOMAIN, SENDER)
        try:
            platform.start_role("gateway")
            posted = Posted()
            asyncio.run(
                post_all(platform, platform.token(SENDER), messages, args.api_concurrency, posted)
            )
            before = sink.count
            goal = before + posted.accepted
            began = time.perf_counter()
            worker = platform.start_role("smtp-out")
            profiler = (
                start_profile(worker.pid, args.profile == "raw", "smtp-out")
                if args.profile
                else None
            )
            cpu_before = cpu_seconds(worker.pid)

            async def measure() -> tuple[float, float | None]:
                first = asyncio.create_task(sink.wait_for(before + 1, STALL_SECONDS))
                done = await sink.wait_for(goal, STALL_SECONDS)
                return await first or 0.0, done

            try:
                first, done = asyncio.run(measure())
                cpu = cpu_seconds(worker.pid) - cpu_before
            finally:
                stop_profile(profiler)
        finally:
            platform.stop()
    delivered = posted.accepted - (goal - sink.count)
    notes = [
        f"smtp-out used {cpu:.1f} s of CPU ({1000 * cpu / max(delivered, 1):.1f} ms a message)",
        f"{args.delivery_concurrency} deliveries at once, at most {args.connections}"
        " connections to the MX host",
    ]
    if posted.refused:
        notes.append(f"{len(posted.refused)} POSTs failed, first: {posted.refused[0]}")
    if done is not None:
        notes.append(
            f"{done - began:.2f} s from starting the worker process (start-up included),"
            f" {first - began:.2f} s of it before the first message arrived"
        )
    return Result(
        f"postroom smtp-out alone, {args.connections} connections (first to last delivered)",
        posted.accepted,
        None if done is None else done - first,
        delivered,
        notes,
    )


# -- Postfix --------------------------------------------------------------------------------


def postfix_run(sink: SmtpSink, messages: list[Message], args: argparse.Namespace) -> Result:
    raw = [(m.sender, m.recipient, m.as_bytes("client.bench.test")) for m in messages]
    with PostfixRelay(sink.address, sink.port, args.connections) as postfix:
        goal = sink.count + len(messages)

        async def measure() -> tuple[float, float, float | None]:
            began = time.perf_counter()
            await smtp_send_all("127.0.0.1", postfix.port, raw, args.api_concurrency)
            injected = time.perf_counter()
            return began, injected, await sink.wait_for(goal, STALL_SECONDS)

        began, injected, done = asyncio.run(measure())
        log = postfix.log()
    delivered = len(messages) - (goal - sink.count)
    notes = [
        f"injection over {args.api_concurrency} SMTP connections took {injected - began:.1f} s",
    ]
    if done is None:
        last = [line for line in log.splitlines() if "status=" in line][-1:]
        notes.append(f"only {delivered} arrived; gave up waiting; last: {last}")
    return Result(
        f"Postfix {postfix.version}, {args.connections} connections (SMTP in to relayed)",
        len(messages),
        None if done is None else done - began,
        delivered,
        notes,
    )


# -- the report -----------------------------------------------------------------------------


def ratio(result: Result, base: Result | None) -> str:
    if result.rate is None or base is None or base.rate is None:
        return "-"
    return f"{result.rate / base.rate:.2f}x"


def report(
    results: Sequence[Result],
    ceiling: Result,
    postroom: Result | None,
    postfix: Result | None,
    postfix_missing: str | None,
    args: argparse.Namespace,
    size: int,
    load: tuple[float, float],
) -> str:
    rows = []
    for result in results:
        rows.append(
            [
                result.system,
                str(result.messages),
                f"{result.seconds:.2f}" if result.seconds else f"({result.delivered} arrived)",
                f"{result.rate:.0f}" if result.rate else "-",
                ratio(result, ceiling),
                ratio(result, postfix),
            ]
        )
    if postfix_missing:
        rows.append([f"postfix: unavailable ({postfix_missing})", "", "", "", "", ""])
    table = markdown_table(
        ["system", "messages", "seconds", "msgs/s", "vs aiosmtplib", "vs Postfix"], rows
    )

    def target(name: str, base: Result | None, wanted: float) -> str:
        if base is None or base.rate is None or postroom is None or postroom.rate is None:
            return f"- postroom ≥ {wanted}x {name}: not measured"
        got = postroom.rate / base.rate
        verdict = "met" if got >= wanted else "missed"
        return f"- postroom ≥ {wanted}x {name}: {got:.2f}x, **{verdict}**"

    notes = [f"- {result.system}: {text}" for result in results for text in result.notes]
    return "\n".join(
        [
            "## outbound: API to delivered, against an aiosmtplib loop and Postfix",
            "",
            f"{args.messages} messages of {size} bytes, one recipient each, to smtp-sink on"
            f" {SINK} (MX of {DOMAIN} via dnsmasq); {args.connections} connections to the sink;"
            f" {args.api_concurrency} concurrent API clients; postroom database:"
            f" {args.database}; {os.cpu_count()} CPUs, load average {load[0]:.1f} before and"
            f" {load[1]:.1f} after. Seconds run from the first message handed over to the sink"
            " having them all.",
            "",
            table,
            "Targets (issue 4 point 13), on the delivery rate (smtp-out alone, first to last"
            " delivered), reported, not asserted:",
            "",
            target("the aiosmtplib ceiling", ceiling, 0.7),
            target("Postfix", postfix, 1.0),
            "",
            *(["Notes:", "", *notes, ""] if notes else []),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outbound.run", description=__doc__)
    parser.add_argument("--messages", type=int, default=5000, help="messages to send (5000)")
    parser.add_argument("--size", type=int, default=2048, help="bytes a message (2048)")
    parser.add_argument(
        "--connections", type=int, default=8, help="connections to the sink, for all (8)"
    )
    parser.add_argument(
        "--api-concurrency", type=int, default=20, help="concurrent POSTs / injections (20)"
    )
    parser.add_argument(
        "--delivery-concurrency",
        type=int,
        default=64,
        help="POSTROOM_DELIVERY_CONCURRENCY: postroom's deliveries in flight (64)",
    )
    parser.add_argument(
        "--systems",
        default="api,alone,postfix",
        help="which runs besides the aiosmtplib ceiling, comma-separated: api (postroom up,"
        " API to delivered), alone (smtp-out alone), postfix (default: all)",
    )
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="flamegraph",
        choices=["flamegraph", "raw"],
        help="py-spy profile of postroom into bench/results: a flame graph (SVG), or 'raw'"
        " collapsed stacks (text, one stack a line) to sum up with a script",
    )
    args = parser.parse_args(argv)

    systems = set(args.systems.split(","))
    messages = make_messages(args.messages, args.size)
    size = len(messages[0].as_bytes("client.bench.test"))
    records = [
        f"--mx-host={DOMAIN},mx.{DOMAIN},10",
        f"--host-record=mx.{DOMAIN},{SINK}",
        "--local-ttl=300",  # dnsmasq answers its own records with TTL 0 unless told
    ]
    postfix: Result | None = None
    postfix_missing: str | None = None
    load_before = os.getloadavg()[0]
    with Dnsmasq() as dns, SmtpSink(SINK) as sink:
        dns.start(records, probe=f"mx.{DOMAIN}")
        note(f"aiosmtplib loop: {args.messages} messages over {args.connections} connections")
        ceiling = asyncio.run(aiosmtplib_loop(sink, messages, args.connections))
        results = [ceiling]
        if "api" in systems:
            note(f"postroom: {args.messages} POSTs, then waiting for the sink")
            results.extend(postroom_run(sink, dns, messages, args))
        alone: Result | None = None
        if "alone" in systems:
            note("postroom smtp-out alone: queue through the API, then start the worker")
            alone = delivery_only_run(sink, dns, messages, args)
            results.append(alone)
        if "postfix" in systems:
            note("Postfix: a private instance relaying to the sink")
            try:
                postfix = postfix_run(sink, messages, args)
                results.append(postfix)
            except PostfixUnavailable as exc:
                postfix_missing = str(exc)
                note(f"postfix: unavailable ({exc})")
    load = (load_before, os.getloadavg()[0])
    markdown = report(results, ceiling, alone, postfix, postfix_missing, args, size, load)
    print(markdown)
    note(f"written to {write_result('outbound', markdown)}")
    rate = alone.rate if alone else None
    measure = f"{args.database}: smtp-out delivery rate vs"
    write_targets(
        "outbound",
        [
            ratio_target(4, "outbound", f"{measure} aiosmtplib", rate, ceiling.rate, 0.7, "msg/s"),
            ratio_target(
                4,
                "outbound",
                f"{measure} Postfix",
                rate,
                postfix.rate if postfix else None,
                1.0,
                "msg/s",
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
