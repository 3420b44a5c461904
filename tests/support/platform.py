"""A real ``postroom`` running as a subprocess, driven over its real ports.

Each instance gets its own data directory, database and free ports, and is started with the
same ``postroom`` console script a user runs.
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import free_port

__all__ = ["Platform", "free_port"]


POSTROOM = str(Path(sys.executable).with_name("postroom"))
PASSWORD = "correct-horse-battery"
# Start-up is ~2 s on an idle machine but has taken over 60 s with two cores fully loaded; a
# role that truly hangs still fails here, only later.
START_SECONDS = 120


class Platform:
    def __init__(
        self, data_dir: Path, database_url: str, extra_env: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.http_port = free_port()
        self.smtp_port = free_port()
        self.submission_port = free_port()
        self.realtime_port = free_port()
        self.log_path = data_dir / "postroom.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.role_processes: list[subprocess.Popen[bytes]] = []
        self.health_ports: dict[str, int] = {}
        """Health port of each process started ("up" or the role): a free one for each."""
        self.env = {
            **os.environ,
            "POSTROOM_DATA_DIR": str(data_dir),
            "POSTROOM_DATABASE_URL": database_url,
            "POSTROOM_HTTP_PORT": str(self.http_port),
            "POSTROOM_SMTP_PORT": str(self.smtp_port),
            "POSTROOM_SUBMISSION_PORT": str(self.submission_port),
            "POSTROOM_REALTIME_PORT": str(self.realtime_port),
            "POSTROOM_HOSTNAME": "mx.postroom.test",
            **(extra_env or {}),
        }

    # -- the command line -------------------------------------------------------------------

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTROOM, *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def setup(self, domain: str, *users: str) -> None:
        for args in (("migrate",), ("domain", "add", domain)):
            result = self.cli(*args)
            assert result.returncode == 0, result.stderr
        for user in users:
            result = self.cli("user", "add", user, "--password", PASSWORD)
            assert result.returncode == 0, result.stderr

    # -- the process ------------------------------------------------------------------------

    def start(self) -> None:
        """``postroom up``: every role in one process."""
        self.process = self._spawn(["up"], self.log_path)

    def start_role(self, role: str) -> subprocess.Popen[bytes]:
        """``postroom run ROLE``: one role in a process of its own."""
        process = self._spawn(["run", role], self.data_dir / f"{role}.log")
        self.role_processes.append(process)
        return process

    def _spawn(self, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        offset = log_path.stat().st_size if log_path.exists() else 0
        env = self.env
        if "POSTROOM_HEALTH_PORT" not in env:
            self.health_ports[args[-1]] = free_port()
            env = {**env, "POSTROOM_HEALTH_PORT": str(self.health_ports[args[-1]])}
        with log_path.open("ab") as log:
            process = subprocess.Popen([POSTROOM, *args], env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")[offset:]
            if process.poll() is not None:
                raise RuntimeError(f"postroom {' '.join(args)} exited early:\n{text}")
            if "postroom is up" in text:
                return process
            time.sleep(0.05)
        process.kill()
        raise RuntimeError(f"postroom {' '.join(args)} did not come up in {START_SECONDS} s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; returns the exit code and the seconds it took to exit."""
        assert self.process is not None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        return code, time.monotonic() - began

    def stop(self) -> None:
        for process in [self.process, *self.role_processes]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)

    # -- the protocols ----------------------------------------------------------------------

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}/api/v1", headers=headers, timeout=30
        )

    def token(self, address: str, password: str = PASSWORD) -> str:
        with self.api() as client:
            response = client.post("/auth/token", data={"username": address, "password": password})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def messages(self, token: str, mailbox: str) -> list[dict[str, Any]]:
        with self.api(token) as client:
            response = client.get("/messages", params={"mailbox": mailbox, "limit": 200})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def wait_for(
        self, token: str, mailbox: str, subject: str, count: int = 1, timeout: float = 20
    ) -> list[dict[str, Any]]:
        """Poll until ``count`` messages with ``subject`` are listed (processing is async).

        Returns as soon as there are at least ``count``; callers assert the exact number.
        """
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = [m for m in self.messages(token, mailbox) if m["subject"] == subject]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{mailbox} has {len(found)} messages {subject!r}, expected {count}")
