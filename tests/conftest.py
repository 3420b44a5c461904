"""Fixtures shared by every test package: the database each test runs against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.platform import Platform
from tests.support.services import postgres_database

# Session-wide real services: spamd (fixture ``spamd_url``), moto's S3 (fixture ``moto_s3``).
pytest_plugins = ["tests.support.spamd", "tests.support.moto"]

DATABASES = ["sqlite", "postgresql"]


def _database(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'postroom.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(params=DATABASES, scope="module")
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Every test that takes this runs once on SQLite and once on the machine's PostgreSQL.

    Shared by the tests of one module; use ``own_database_url`` for a database of one's own.
    """
    yield from _database(request.param, tmp_path_factory.mktemp("db"))


@pytest.fixture(params=DATABASES)
def own_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database for this test alone, on SQLite and on PostgreSQL."""
    yield from _database(request.param, tmp_path)


@pytest.fixture(scope="module")
def platform(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A running ``postroom up`` with domain example.test and users ann and bob."""
    running = Platform(tmp_path_factory.mktemp("platform"), database_url)
    running.setup("example.test", "ann@example.test", "bob@example.test")
    running.start()
    yield running
    running.stop()
