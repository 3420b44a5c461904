"""Accepting a user's finished message for sending: the one path the API and submission share.

Both ``POST /api/v1/send`` and the SMTP submission port end here with raw RFC 5322 bytes and an
envelope. The checks (local users exist, nobody suppressed) come first and change nothing; then
the blobs are written and one transaction records the Sent copy and every delivery (the
transactional outbox), and only then are the workers hinted. When :func:`submit` returns, the
message is durable: a ``202`` or ``250`` may be given. Sends that reach the checks or the
transaction at the same moment share them (group commit, see :func:`_writer`): a busy
gateway spends one query and one commit on many sends, not one each.

A send may be due later (``send_at``: a scheduled send or an undo window). Its deliveries are
then recorded with ``next_attempt_at = send_at``, which the delivery claim and the sweeper
already respect, and its local inbound rows as ``scheduled`` rather than ``pending``, so no
processor takes them; :mod:`storage.repositories.schedules` releases them when due and cancels
sends that have not gone out.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CompoundSelect,
    Table,
    bindparam,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.errors import InvalidInput
from postroom.message import ParsedMessage, parse_message
from storage.db.bulk_insert import TableRows
from storage.db.database import Database
from storage.db.lone_read import list_parameter, one_of
from storage.db.models import Domain, Suppression, User
from storage.db.sqlite_driver import defer_inserts
from storage.db.types import UTCDateTime, utcnow
from storage.queues import INCOMING, OUTGOING, Hint, TransactionalQueue
from storage.queues.group_commit import GroupCommit
from storage.registry import Storage
from storage.repositories import schedules, suppressions
from storage.repositories.accounts import find_user
from storage.repositories.mail import save_attachments
from storage.repositories.outbound import NewSend, RecordedSend, record_sends
from storage.transaction import transaction

__all__ = ["Origin", "submit"]

log = logging.getLogger(__name__)

OnRecord = Callable[[AsyncSession, RecordedSend], Awaitable[None]]
Indexer = Callable[[str, ParsedMessage], TableRows]
"""A send's search document from its raw blob's key and what parsing it gave
(``search.documents.send_document``: storage may not import search, so it is passed in)."""

INLINE_PARSE_BYTES = 64 * 1024
"""Messages up to this size are parsed on the event loop: a thread would hold the GIL in
pure-Python parsing while every database call (each a hop to the SQLite thread and back)
waits for it, which costs a busy gateway more than the parse itself (about a millisecond).
Larger messages still go to a thread so the loop never stalls for long."""


@dataclass(frozen=True)
class Origin:
    """Where a recipient came from: the request field and the address as written there."""

    field: str | None
    written: str


async def submit(
    store: Storage,
    user: User,
    raw: bytes,
    *,
    recipients: list[str],
    bcc: list[str],
    origins: Mapping[str, Origin] | None = None,
    send_at: datetime | None = None,
    on_record: OnRecord | None = None,
    parsed: ParsedMessage | None = None,
    index: Indexer | None = None,
) -> RecordedSend:
    """Make ``raw`` durable for ``recipients`` (lower-cased addresses, bcc among them).

    ``origins`` says where each recipient came from, so an error names the request field
    (``to[0]``) and the address as the user wrote it. ``send_at`` records when the send is
    due (and makes it cancellable); ``on_record`` runs inside the same transaction, so what it
    writes (a drafts' removal, an idempotency key) commits or fails with the send.
    ``parsed`` is what :func:`postroom.message.parse_message` gives for ``raw``, when the
    caller already knows it (the API composed ``raw`` itself); otherwise ``raw`` is parsed.
    ``index`` gives the send's search document, written in the same transaction with the
    batch's other rows.
    """
    origins = origins or {}
    local_domains, suppressed = await _checks(store).submit(recipients)
    if suppressed or any(a.rsplit("@", 1)[1] in local_domains for a in recipients):
        async with store.db.reader() as session:
            await _check_local_recipients(session, recipients, local_domains, origins)
            if suppressed:
                await _check_suppressed(session, recipients, origins)

    if parsed is None:
        if len(raw) <= INLINE_PARSE_BYTES:
            parsed = parse_message(raw)
        else:
            parsed = await asyncio.to_thread(parse_message, raw)
    attachment_keys = await save_attachments(store.blobs, parsed)
    raw_key = await store.blobs.put(raw)
    now = utcnow()
    due = None if send_at is None else max(send_at, now)
    delay = 0.0 if due is None else (due - now).total_seconds()
    send = NewSend(
        sender=user,
        raw_key=raw_key,
        size=len(raw),
        parsed=parsed,
        attachment_keys=attachment_keys,
        recipients=recipients,
        bcc=bcc,
        local_domains=local_domains,
        due=due,
        hold_local=delay > 0,
    )
    document = None if index is None else index(raw_key, parsed)
    recorded = await _writer(store).submit(_Pending(send, on_record, document))
    if delay > 0:
        await schedules.hint(store, recorded, delay)
    return recorded


@dataclass(frozen=True)
class _Pending:
    send: NewSend
    on_record: OnRecord | None
    document: TableRows | None
    """Its search document's row, built before the batch (``Indexer``)."""


_WRITERS: weakref.WeakKeyDictionary[Database, GroupCommit[_Pending, RecordedSend]] = (
    weakref.WeakKeyDictionary()
)


def _writer(store: Storage) -> GroupCommit[_Pending, RecordedSend]:
    """Sends of this process that reach their transaction together share it (group commit).

    A send waits only while an earlier batch is being written (on SQLite, as it would for the
    writer lock anyway); then it goes with every send that arrived meanwhile: one commit, and
    one statement per table for all of them, instead of a transaction each. Each is answered
    once the batch has committed. If a batch fails (one send's ``on_record`` raising, such as
    a repeated ``Idempotency-Key``), each of its sends is written again alone, so only the
    one at fault fails.
    """
    writer = _WRITERS.get(store.db)
    if writer is None:

        async def write(batch: Sequence[_Pending]) -> list[RecordedSend]:
            recorded = await _record(store, batch)
            if not isinstance(store.queue, TransactionalQueue):
                try:
                    await store.queue.put_many(_hints(batch, recorded))
                except Exception:
                    log.exception("could not enqueue a batch of sends; the sweeper will")
            return recorded

        writer = _WRITERS[store.db] = GroupCommit(write)
    return writer


async def _record(store: Storage, batch: Sequence[_Pending]) -> list[RecordedSend]:
    """One transaction for ``batch``: every send, their index, then each one's ``on_record``."""
    async with transaction(store) as session:
        # fails as a whole (GroupCommit then writes each send alone): the inserts may wait
        # and go with the next statement that answers something, or the commit
        await defer_inserts(session)
        recorded = await record_sends(
            session, [pending.send for pending in batch], also=_documents(batch)
        )
        for pending, result in zip(batch, recorded, strict=True):
            if pending.on_record is not None:
                await pending.on_record(session, result)
        if isinstance(store.queue, TransactionalQueue):
            await store.queue.put_in(session, _hints(batch, recorded))
    return recorded


def _documents(batch: Sequence[_Pending]) -> list[TableRows]:
    """The batch's search documents, one set of rows per table (one statement each)."""
    tables: dict[tuple[Any, bool, tuple[str, ...]], TableRows] = {}
    for pending in batch:
        if (document := pending.document) is not None:
            key = (document.table, document.ignore_duplicates, document.update_on_conflict)
            if key not in tables:
                tables[key] = TableRows(
                    document.table, [], document.ignore_duplicates, document.update_on_conflict
                )
            tables[key].rows.extend(document.rows)
    return list(tables.values())


def _hints(batch: Sequence[_Pending], recorded: Sequence[RecordedSend]) -> list[Hint]:
    """The workers' hints for the sends due now: each remote delivery for smtp-out, each
    local copy for the processors (a later send is hinted by ``schedules.hint`` instead)."""
    hints: list[Hint] = []
    for pending, result in zip(batch, recorded, strict=True):
        if pending.send.hold_local:
            continue
        hints += [(INCOMING, {"inbound_id": row.id}) for row in result.local]
        hints += [(OUTGOING, {"delivery_id": delivery.id}) for delivery in result.remote]
    return hints


_DOMAINS = cast(Table, Domain.__table__).c
_SUPPRESSIONS = cast(Table, Suppression.__table__).c
_RECIPIENT_FACTS: dict[str, CompoundSelect[Any]] = {}


def _recipient_facts_statement(dialect: str) -> CompoundSelect[Any]:
    """Built once per engine, for a lone read (one hand-off, no session): the lists are one
    parameter each whatever their length, an array on PostgreSQL (``= ANY``) and JSON text on
    SQLite (``IN json_each``), never an expanding ``IN`` rendered again at every execution."""
    statement = _RECIPIENT_FACTS.get(dialect)
    if statement is None:
        statement = _RECIPIENT_FACTS[dialect] = union_all(
            select(literal_column("'domain'").label("kind"), _DOMAINS.name.label("value")).where(
                one_of(_DOMAINS.name, "domains", dialect)
            ),
            select(
                literal_column("'suppressed'").label("kind"), _SUPPRESSIONS.address.label("value")
            ).where(
                one_of(_SUPPRESSIONS.address, "addresses", dialect),
                # suppressions.active's condition: an expired entry blocks nothing
                or_(
                    _SUPPRESSIONS.expires_at.is_(None),
                    _SUPPRESSIONS.expires_at > bindparam("now", type_=UTCDateTime),
                ),
            ),
        )
    return statement


Facts = tuple[set[str], bool]

_CHECKS: weakref.WeakKeyDictionary[Database, GroupCommit[list[str], Facts]] = (
    weakref.WeakKeyDictionary()
)


def _checks(store: Storage) -> GroupCommit[list[str], Facts]:
    """The recipient facts of the sends arriving together, read with one statement.

    :class:`GroupCommit` batches reads as well as writes: each send asks which of its
    recipients' domains are ours and whether any of its recipients is suppressed, and the
    sends waiting meanwhile get their answers from one query over all their recipients.
    """
    checks = _CHECKS.get(store.db)
    if checks is None:

        async def read(requests: Sequence[list[str]]) -> list[Facts]:
            return await _recipient_facts(store, requests)

        checks = _CHECKS[store.db] = GroupCommit(read)
    return checks


async def _recipient_facts(store: Storage, requests: Sequence[list[str]]) -> list[Facts]:
    """For each list of recipients: which of their domains are ours, and whether any of them
    is suppressed (the details are read only when something is wrong)."""
    everyone = [address for recipients in requests for address in recipients]
    dialect = store.db.engine.dialect.name
    rows = await store.db.lone.all(
        _recipient_facts_statement(dialect),
        {
            "domains": list_parameter(
                dialect, sorted({address.rsplit("@", 1)[1] for address in everyone})
            ),
            "addresses": list_parameter(dialect, sorted({a.lower() for a in everyone})),
            "now": utcnow(),
        },
    )
    local: set[str] = set()
    suppressed: set[str] = set()
    for row in rows:
        (local if row["kind"] == "domain" else suppressed).add(row["value"])
    return [
        (
            {d for a in recipients if (d := a.rsplit("@", 1)[1]) in local},
            any(a.lower() in suppressed for a in recipients),
        )
        for recipients in requests
    ]


async def _check_local_recipients(
    session: AsyncSession, recipients: list[str], local: set[str], origins: Mapping[str, Origin]
) -> None:
    """A local recipient who does not exist is refused now, not bounced later."""
    for address in recipients:
        if address.rsplit("@", 1)[1] in local and await find_user(session, address) is None:
            origin = origins.get(address, Origin(None, address))
            raise InvalidInput(f"{origin.written}: no such user here", field=origin.field)


async def _check_suppressed(
    session: AsyncSession, recipients: list[str], origins: Mapping[str, Origin]
) -> None:
    """An address that bounced for good is refused now: sending again would only bounce."""
    listed = await suppressions.active(session, recipients)
    for address in recipients:
        if (entry := listed.get(address.lower())) is None:
            continue
        origin = origins.get(address, Origin(None, address))
        until = (
            f"it expires on {entry.expires_at:%Y-%m-%d %H:%M} UTC or "
            if entry.expires_at is not None
            else ""
        )
        raise InvalidInput(
            f"{origin.written} is on the suppression list since "
            f"{entry.created_at:%Y-%m-%d %H:%M} UTC ({entry.source}: {entry.reason}); "
            f"mail to it is refused until {until}an administrator removes it with "
            f"`postroom suppression remove {entry.address}` or "
            f"DELETE /api/v1/suppressions/{entry.address}",
            field=origin.field,
        )
