"""A real DNS server for tests and benchmarks: Debian's dnsmasq on a free loopback port.

Records are dnsmasq options (``--mx-host=...``, ``--host-record=...``, ``--txt-record=...``);
every other name under ``.test`` is NXDOMAIN. The port is chosen at construction, so records
that depend on it, or on keys made later, can be given when starting.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence

import dns.exception
import dns.resolver

from tests.support.ports import free_port
from tests.support.services import stop_process

__all__ = ["Dnsmasq", "DnsmasqFailed", "free_port", "program"]


class DnsmasqFailed(RuntimeError):
    """dnsmasq is missing, exited, or never answered."""


def program(name: str) -> str | None:
    """A binary on PATH or in the sbin directories Debian puts daemons in."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


class Dnsmasq:
    def __init__(self) -> None:
        binary = program("dnsmasq")
        if binary is None:
            raise DnsmasqFailed("dnsmasq is not installed (Debian: dnsmasq-base)")
        self.binary = binary
        self.port = free_port(kinds=(socket.SOCK_DGRAM, socket.SOCK_STREAM))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def nameserver(self) -> str:
        """As ``POSTROOM_DNS_NAMESERVERS`` wants it."""
        return f"127.0.0.1:{self.port}"

    def start(self, records: Sequence[str], probe: str, rdtype: str = "A") -> None:
        """Serve ``records``; return once ``probe`` is answered."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                f"--port={self.port}",
                "--local=/test/",
                "--pid-file=",
                "--user=root",
                *records,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        resolver = self.resolver()
        resolver.lifetime = 0.5
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr
                error = stderr.read().decode(errors="replace") if stderr else ""
                raise DnsmasqFailed(f"dnsmasq did not start: {error.strip()}")
            with contextlib.suppress(dns.exception.DNSException):
                resolver.resolve(probe, rdtype)
                return
        self.stop()
        raise DnsmasqFailed("dnsmasq started but does not answer")

    def resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        return resolver

    def __enter__(self) -> Dnsmasq:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process, grace=5)
        if self.process.stderr is not None:
            self.process.stderr.close()
