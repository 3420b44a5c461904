"""A queue kept in a table of the metadata database (the embedded default).

Claiming is one conditional ``UPDATE ... RETURNING``: a row is taken only if it is still due, so
two consumers (threads or processes) never lease the same job at once, on SQLite or PostgreSQL.
Consumers in this process are woken at once by ``put``; other processes poll. Puts and acks
made at the same time share one transaction (:class:`GroupCommit`; acks one ``DELETE``): a busy
worker acks hundreds of jobs a second and a sweep may put a thousand, and a commit each would
be most of their writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, event, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from postroom.ids import new_id
from storage.db.database import Database
from storage.db.models import QueueJob
from storage.db.types import utcnow
from storage.queues import Hint, Job
from storage.queues.group_commit import GroupCommit

__all__ = ["TableQueue"]

POLL_SECONDS = 0.5

_JOBS = cast(Table, QueueJob.__table__)


class TableQueue:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._wakeups: dict[str, asyncio.Event] = {}
        self._acks: GroupCommit[str, None] = GroupCommit(self._delete)
        self._puts: GroupCommit[dict[str, Any], str] = GroupCommit(self._insert)

    async def put(self, queue: str, payload: dict[str, Any], *, delay: float = 0.0) -> str:
        now = utcnow()
        job_id = await self._puts.submit(_job(queue, payload, now, delay))
        if delay <= 0:
            self._wake(queue)
        return job_id

    async def put_many(self, hints: list[Hint]) -> None:
        async with self.db.session() as session, session.begin():
            await self.put_in(session, hints)

    async def put_in(self, session: AsyncSession, hints: list[Hint]) -> None:
        if not hints:
            return
        now = utcnow()
        await session.execute(insert(_JOBS), [_job(q, payload, now, 0.0) for q, payload in hints])
        queues = {queue for queue, _ in hints}

        def wake(_session: Session) -> None:
            for queue in queues:
                self._wake(queue)

        event.listen(session.sync_session, "after_commit", wake, once=True)

    def _wake(self, queue: str) -> None:
        """In-process consumers waiting on ``queue`` claim now instead of at their next poll."""
        if (wakeup := self._wakeups.pop(queue, None)) is not None:
            wakeup.set()

    async def _insert(self, jobs: Sequence[dict[str, Any]]) -> list[str]:
        async with self.db.session() as session, session.begin():
            await session.execute(insert(_JOBS), list(jobs))
        return [job["id"] for job in jobs]

    async def claim(
        self, queue: str, consumer: str, *, limit: int = 10, lease: float = 120.0, wait: float = 1.0
    ) -> list[Job]:
        deadline = time.monotonic() + wait
        while True:
            wakeup = self._wakeups.setdefault(queue, asyncio.Event())
            jobs = await self._claim_due(queue, consumer, limit, lease)
            remaining = deadline - time.monotonic()
            if jobs or remaining <= 0:
                return jobs
            try:
                await asyncio.wait_for(wakeup.wait(), timeout=min(POLL_SECONDS, remaining))
            except TimeoutError:
                pass

    async def _claim_due(self, queue: str, consumer: str, limit: int, lease: float) -> list[Job]:
        """One ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``: a claim is a single
        statement (Core, not ORM: a busy worker claims hundreds of times a second)."""
        now = utcnow()
        c = _JOBS.c
        due = (
            select(c.id)
            .where(c.queue == queue, c.available_at <= now)
            .order_by(c.available_at)
            .limit(limit)
            # PostgreSQL: rows another claimer holds are skipped, not waited for and then
            # lost (every consumer would pick the same oldest job, and all but one would
            # sleep a poll interval). SQLite renders nothing here: its BEGIN IMMEDIATE
            # already makes the statement one unit with every other writer.
            .with_for_update(skip_locked=True)
        )
        async with self.db.session() as session, session.begin():
            rows = await session.execute(
                update(_JOBS)
                .where(c.id.in_(due.scalar_subquery()), c.available_at <= now)
                .values(
                    available_at=now + timedelta(seconds=lease),
                    claimed_by=consumer,
                    attempts=c.attempts + 1,
                )
                .returning(c.id, c.payload, c.attempts)
            )
            return [Job(id=r.id, queue=queue, payload=r.payload, attempts=r.attempts) for r in rows]

    async def ack(self, job: Job) -> None:
        await self._acks.submit(job.id)

    async def _delete(self, ids: Sequence[str]) -> list[None]:
        async with self.db.session() as session, session.begin():
            await session.execute(delete(_JOBS).where(_JOBS.c.id.in_(ids)))
        return [None] * len(ids)

    async def release(self, job: Job, *, delay: float = 0.0) -> None:
        async with self.db.session() as session, session.begin():
            await session.execute(
                update(QueueJob)
                .where(QueueJob.id == job.id)
                .values(available_at=utcnow() + timedelta(seconds=delay), claimed_by=None)
            )
        if delay <= 0:
            self._wake(job.queue)

    async def depth(self, queue: str) -> int:
        async with self.db.session() as session:
            count = await session.scalar(
                select(func.count()).select_from(QueueJob).where(QueueJob.queue == queue)
            )
            return int(count or 0)

    async def close(self) -> None:
        return None


def _job(queue: str, payload: dict[str, Any], now: datetime, delay: float) -> dict[str, Any]:
    return {
        "id": new_id(),
        "queue": queue,
        "payload": payload,
        "available_at": now + timedelta(seconds=delay),
        "attempts": 0,
        "created_at": now,
    }
