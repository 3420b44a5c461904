"""A real SpamAssassin spamd for the tests that check message content (a pytest plugin).

Registered in the root ``conftest.py`` through ``pytest_plugins``, so one spamd serves the
whole session: it takes some seconds to load its rules. It runs on a free loopback port with
the rules Debian's ``spamassassin`` package ships, ``--local`` (no DNS blocklists or other
network tests, so verdicts do not depend on the machine's network) and no per-user settings.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.services import require, stop_process

__all__ = ["free_tcp_port", "spamd_url"]

START_SECONDS = 90.0
"""Loading the rules takes a few seconds on a laptop, longer on a busy CI machine."""


def free_tcp_port() -> int:
    """A loopback TCP port nothing listens on (at the moment of asking)."""
    return free_port()


def spamd_command(binary: str, port: int, folder: Path) -> list[str]:
    command = [
        binary,
        f"--listen=127.0.0.1:{port}",
        "--allowed-ips=127.0.0.1",
        "--max-children=1",
        "--local",
        "--nouser-config",
        "--syslog=stderr",
        f"--pidfile={folder / 'spamd.pid'}",
    ]
    if os.geteuid() == 0:
        command.append("--username=nobody")  # spamd will not scan mail as root
    return command


@pytest.fixture(scope="session")
def spamd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spamd://127.0.0.1:PORT`` of a running spamd, stopped at the end of the session."""
    binary = shutil.which("spamd") or shutil.which("spamd", path="/usr/sbin:/sbin")
    require(binary is not None, "spamd is not installed (Debian: spamassassin spamd)")
    assert binary is not None
    folder = tmp_path_factory.mktemp("spamd")
    port = free_tcp_port()
    log_path = folder / "spamd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            spamd_command(binary, port, folder), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_pong(process, port, log_path)
        yield f"spamd://127.0.0.1:{port}"
    finally:
        stop_process(process)


def _wait_for_pong(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            require(False, f"spamd did not start: {_tail(log_path)}")
        if _pong(port):
            return
        time.sleep(0.2)
    require(False, f"spamd did not answer PING within {START_SECONDS:g} s: {_tail(log_path)}")


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.sendall(b"PING SPAMC/1.5\r\n\r\n")
            return b"PONG" in connection.recv(1024)
    except OSError:
        return False


def _tail(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").strip().splitlines()
    return " | ".join(lines[-5:]) or "(no output)"
