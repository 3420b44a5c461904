"""``UTCDateTime``: aware UTC datetimes in and out, stored on SQLite exactly as SQLAlchemy would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime, select
from sqlalchemy.dialects import sqlite

from storage.db.models import Domain
from storage.db.types import UTCDateTime
from storage.registry import Storage
from storage.repositories.accounts import add_domain

MOMENTS = [
    datetime(2026, 1, 31, 9, 0, tzinfo=UTC),  # no microseconds: still written with six digits
    datetime(2026, 11, 24, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),  # not UTC
    datetime(999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
]


@pytest.mark.parametrize("moment", MOMENTS)
def test_sqlite_text_is_what_sqlalchemys_datetime_writes(moment: datetime) -> None:
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    assert ours(moment) == theirs(moment.astimezone(UTC).replace(tzinfo=None))


def test_one_processor_writes_each_moment_right_however_they_repeat() -> None:
    """It keeps the last moment's text (a batch binds one ``now`` many times)."""
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    for moment in [*MOMENTS, MOMENTS[0], MOMENTS[0], None, MOMENTS[0], *reversed(MOMENTS)]:
        expected = None if moment is None else theirs(moment.astimezone(UTC).replace(tzinfo=None))
        assert ours(moment) == expected


def test_a_naive_datetime_is_refused() -> None:
    process = UTCDateTime().bind_processor(sqlite.dialect())
    assert process is not None
    with pytest.raises(ValueError, match="naive"):
        process(datetime(2026, 1, 1))
    assert process(None) is None


async def test_a_written_moment_reads_back_as_the_same_instant_in_utc(store: Storage) -> None:
    async with store.db.session() as session, session.begin():
        domain = await add_domain(session, "types.test")
        domain.created_at = MOMENTS[2]
    async with store.db.reader() as reader:
        created = await reader.scalar(select(Domain.created_at).where(Domain.name == "types.test"))
    assert created == MOMENTS[2] and created.tzinfo == UTC
