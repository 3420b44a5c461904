"""Finding the real services tests need, and refusing to pretend when one is missing.

Locally a missing service skips its tests with the reason; in CI
(``POSTROOM_TEST_REQUIRE_SERVICES=1``) it fails them, so a green run means everything ran.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest

__all__ = ["POSTGRES_ADMIN_URL", "postgres_database", "require", "stop_process"]

POSTGRES_ADMIN_URL = os.environ.get(
    "POSTROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def require(available: bool, reason: str) -> None:
    if available:
        return
    if os.environ.get("POSTROOM_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test scope, dropped afterwards; yields its URL."""
    name = f"postroom_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        require(False, f"PostgreSQL at {POSTGRES_ADMIN_URL} is not usable: {exc}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def stop_process(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM a helper server (moto, spamd, dnsmasq), and SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
