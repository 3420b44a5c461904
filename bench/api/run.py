"""bench/api: how fast the gateway lists and sends, against a trivial endpoint of its own.

A real ``postroom run gateway`` process serves three endpoints, each loaded in turn by the same
50 concurrent keep-alive clients for the same time:

- **trivial**: ``GET /healthz`` (a constant JSON answer: the framework and server alone);
- **list**: ``GET /api/v1/messages?mailbox=sent&limit=50`` (auth, rate limit, one page of 50),
  every client reading the same user's Sent mailbox;
- **send**: ``POST /api/v1/send`` of a 1 KB message to a remote recipient (auth, rate limit,
  validation, MIME composition, blob write and the outbox transaction; 202 once durable), each
  client signed in as a user of its own, as 50 people sending would be (one user's changes are
  ordered by a lock on that user's row, so 50 clients of one user measure that lock instead).

Run embedded (SQLite, no Redis) and on PostgreSQL + Redis (queues and rate-limit counters in
Redis). Rate limits stay on, with budgets too large to be hit, so their cost is measured.
Targets (issue 5 point 14): list at least 0.5x and send at least 0.3x the trivial endpoint's
requests per second. Reported, not asserted.

The clients are plain asyncio streams speaking HTTP/1.1 (lighter than an HTTP library, so the
client steals less of the machine from the server), in this process; the server is another.

    .venv/bin/python -m bench.api.run [--seconds 10] [--clients 50] [--setup embedded,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.support import cpu_seconds, markdown_table, note, write_result
from bench.targets import Target, ratio_target, write_targets
from tests.support.platform import Platform
from tests.support.redis import REDIS_URL, delete_prefix, unique_prefix
from tests.support.services import postgres_database

DOMAIN = "bench-api.test"
ADMIN = f"admin@{DOMAIN}"
PASSWORD = "bench-api-password"
SEED = 60
UNLIMITED = "100000000/minute"
TARGETS = {"list": 0.5, "send": 0.3}
MESSAGE = json.dumps(
    {
        "to": ["someone@remote.test"],
        "subject": "Benchmark message",
        "text": "The quick brown fox jumps over the lazy dog. " * 22,
    }
).encode()


@dataclass
class Load:
    """What the clients measured on one endpoint."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    """CPU seconds the gateway process used while measured (all its threads)."""

    @property
    def cpu_per_request(self) -> float:
        """Milliseconds of the gateway's CPU a request: where a ratio's cost goes."""
        return self.server_cpu / len(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def _request(method: str, path: str, token: str | None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: keep-alive"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _client(
    port: int, request: bytes, expect: int, until: float, measure_from: float, load: Load
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (began := time.monotonic()) < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if began < measure_from:
                continue  # warming up
            if status == expect:
                load.latencies.append(time.monotonic() - began)
            else:
                load.errors += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def run_load(
    port: int, requests: list[bytes], expect: int, seconds: float, server_pid: int | None = None
) -> Load:
    """One keep-alive client per request given, each repeating its request."""
    load = Load()
    start = time.monotonic()
    measure_from = start + 1.0
    until = measure_from + seconds

    async def server_cpu() -> None:
        if server_pid is None:
            return
        await asyncio.sleep(measure_from - time.monotonic())
        before = cpu_seconds(server_pid)
        await asyncio.sleep(until - time.monotonic())
        load.server_cpu = cpu_seconds(server_pid) - before

    await asyncio.gather(
        server_cpu(),
        *(_client(port, request, expect, until, measure_from, load) for request in requests),
    )
    load.seconds = seconds
    return load


@contextlib.contextmanager
def gateway(setup: str) -> Iterator[Platform]:
    """``postroom run gateway`` for ``setup``, its user signed up and its Sent mailbox seeded."""
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-api-")))
        env = {
            "POSTROOM_RATE_SEND_USER": UNLIMITED,
            "POSTROOM_RATE_SEND_IP": UNLIMITED,
            "POSTROOM_RATE_READ_USER": UNLIMITED,
            "POSTROOM_RATE_READ_IP": UNLIMITED,
        }
        if setup == "postgresql":
            url = stack.enter_context(postgres_database())
            prefix = unique_prefix()
            env |= {"POSTROOM_REDIS_URL": REDIS_URL, "POSTROOM_REDIS_PREFIX": prefix}
            stack.callback(lambda: asyncio.run(delete_prefix(prefix)))
        else:
            url = f"sqlite+aiosqlite:///{folder / 'postroom.db'}"
        platform = Platform(folder, url, extra_env=env)
        for args in (
            ("migrate",),
            ("domain", "add", DOMAIN),
            ("user", "add", ADMIN, "--password", PASSWORD, "--admin"),
        ):
            result = platform.cli(*args)
            if result.returncode != 0:
                raise RuntimeError(f"postroom {' '.join(args)}: {result.stderr}")
        platform.start_role("gateway")
        stack.callback(platform.stop)
        yield platform


def sign_up(platform: Platform, clients: int) -> list[str]:
    """A token for the admin, then one for each of ``clients`` new users."""
    tokens = [platform.token(ADMIN, PASSWORD)]
    with platform.api(tokens[0]) as api:
        for n in range(clients):
            address = f"user{n}@{DOMAIN}"
            body = {"address": address, "password": PASSWORD}
            api.post("/admin/users", json=body).raise_for_status()
            tokens.append(platform.token(address, PASSWORD))
    return tokens


def seed(platform: Platform, token: str) -> None:
    """A full page and more in one user's Sent mailbox."""
    with platform.api(token) as api:
        for _ in range(SEED):
            headers = {"Content-Type": "application/json"}
            api.post("/send", content=MESSAGE, headers=headers).raise_for_status()


async def measure(
    platform: Platform, tokens: list[str], clients: int, seconds: float
) -> dict[str, Load]:
    port = platform.http_port
    reader, senders = tokens[0], tokens[1 : clients + 1]
    plan = {
        "trivial": ([_request("GET", "/healthz", None)] * clients, 200),
        "list": (
            [_request("GET", "/api/v1/messages?mailbox=sent&limit=50", reader)] * clients,
            200,
        ),
        "send": ([_request("POST", "/api/v1/send", t, MESSAGE) for t in senders], 202),
    }
    results: dict[str, Load] = {}
    for name, (requests, expect) in plan.items():
        note(f"{clients} clients on {name} for {seconds:.0f} s")
        server = platform.role_processes[-1].pid
        results[name] = await run_load(port, requests, expect, seconds, server)
    return results


def rows(setup: str, results: dict[str, Load]) -> list[list[str]]:
    trivial = results["trivial"].rate
    table = []
    for name, load in results.items():
        ratio = load.rate / trivial if trivial else 0.0
        target = TARGETS.get(name)
        verdict = (
            "" if target is None else (f"≥ {target}x " + ("met" if ratio >= target else "MISSED"))
        )
        table.append(
            [
                setup,
                name,
                f"{load.rate:.0f}",
                f"{load.percentile(50):.1f}",
                f"{load.percentile(99):.1f}",
                f"{load.cpu_per_request:.2f}",
                str(load.errors),
                f"{ratio:.2f}x",
                verdict,
            ]
        )
    return table


def targets(setup: str, results: dict[str, Load]) -> list[Target]:
    """Issue 5 point 14: list at least 0.5x and send at least 0.3x the trivial endpoint."""
    trivial = results["trivial"].rate
    return [
        ratio_target(
            5, "api", f"{setup}: {name} req/s vs trivial", load.rate, trivial, want, "req/s"
        )
        for name, load in results.items()
        if (want := TARGETS.get(name)) is not None
    ]


def _loads(loads: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.1f}" for value in loads)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--setup", default="embedded,postgresql")
    args = parser.parse_args(argv)

    table: list[list[str]] = []
    measured: list[Target] = []
    load_before = os.getloadavg()
    for setup in args.setup.split(","):
        note(f"{setup}: starting postroom run gateway")
        with gateway(setup) as platform:
            tokens = sign_up(platform, args.clients)
            seed(platform, tokens[0])
            results = asyncio.run(measure(platform, tokens, args.clients, args.seconds))
        table += rows(setup, results)
        measured += targets(setup, results)
    markdown = (
        "## api\n\n"
        f"`postroom run gateway`, {args.clients} concurrent keep-alive clients, "
        f"{args.seconds:.0f} s per endpoint after 1 s of warm-up; latency in ms. Ratio: "
        "requests per second against the trivial endpoint (`GET /healthz`) of the same server "
        "in the same run. CPU: the gateway process's (every thread) per request measured. "
        "Load average (1, 5, 15 min) before: "
        f"{_loads(load_before)}; after: {_loads(os.getloadavg())} (on "
        f"{os.cpu_count()} CPUs).\n\n"
        + markdown_table(
            ["setup", "endpoint", "req/s", "p50", "p99", "CPU ms/req", "errors", "ratio", "target"],
            table,
            right=2,
        )
    )
    print(markdown)
    write_result("api", markdown)
    write_targets("api", measured)
    return 0


if __name__ == "__main__":
    sys.exit(main())
