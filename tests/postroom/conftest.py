"""Fixtures of the core's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.services import postgres_database


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (for tests that need PostgreSQL itself)."""
    with postgres_database() as url:
        yield url
