"""Rows for several tables written together: what a batch of sends inserts.

A batch of sends inserts into a dozen tables. On PostgreSQL each statement is a round trip,
and under load each round trip also waits for a busy event loop to take its answer (3 to 5 ms
under the send benchmark): those statements were most of a batch's time. :func:`insert_all`
makes them one statement there, a chain of data-modifying CTEs, each table's rows given as one
JSON parameter and expanded by ``json_populate_recordset`` into the table's own row type::

    WITH t0 AS (INSERT INTO blobs (key, size, created_at)
                SELECT key, size, created_at
                FROM json_populate_recordset(NULL::blobs, CAST($1 AS json))
                ON CONFLICT DO NOTHING),
         t1 AS (INSERT INTO messages (...) SELECT ... FROM json_populate_recordset(...))
    SELECT 1

The SQL depends only on the tables and columns given, not on the number of rows, so it is
built once and the server plans it as any other. Foreign keys hold: PostgreSQL checks them when
the whole statement ends, so a row may refer to one inserted by another CTE of it.

On SQLite each table is its usual multi-row ``INSERT``: the driver sends them with the
transaction's next answered statement or its commit
(:func:`storage.db.sqlite_driver.defer_inserts`).

The rows are what a Core ``insert`` would take: Python values, one dict per row, the same keys
in every row of a table. Column defaults kept in Python (``default=``) are filled in here, as
SQLAlchemy would; values are encoded as the columns' types bind them (``UTCDateTime``: naive
UTC; ``JSON``: nested JSON).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, TextClause, bindparam, insert, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from storage.db.database import dialect_insert

__all__ = ["TableRows", "insert_all"]


@dataclass(frozen=True)
class TableRows:
    """Rows for one table. ``ignore_duplicates``: ``ON CONFLICT DO NOTHING`` (content another
    send already stored); ``update_on_conflict``: the columns of a unique key, whose existing
    row gets the new values instead (``ON CONFLICT (key) DO UPDATE``: a search document)."""

    table: Table
    rows: list[dict[str, Any]]
    ignore_duplicates: bool = False
    update_on_conflict: tuple[str, ...] = ()


async def insert_all(connection: AsyncConnection, batches: Sequence[TableRows]) -> None:
    """Insert every batch's rows, in the order given, in the caller's transaction."""
    batches = [_one_per_key(batch) for batch in batches if batch.rows]
    if not batches:
        return
    if connection.dialect.name == "postgresql":
        statement, parameters = _chained(connection.dialect, batches)
        await connection.execute(statement, parameters)
        return
    for batch in batches:
        await connection.execute(_plain(connection.dialect.name, batch), batch.rows)


Shape = tuple[str, tuple[str, ...], bool, tuple[str, ...]]
"""A table's part of a statement: its name, the columns given, and what a conflict does."""


def _one_per_key(batch: TableRows) -> TableRows:
    """An ``update_on_conflict`` batch with one row per key, the last given (one statement
    may not update a row twice)."""
    if not batch.update_on_conflict:
        return batch
    rows = {tuple(row[name] for name in batch.update_on_conflict): row for row in batch.rows}
    if len(rows) == len(batch.rows):
        return batch
    return TableRows(batch.table, list(rows.values()), update_on_conflict=batch.update_on_conflict)


_PLAIN: dict[tuple[str, Shape], Insert] = {}


def _plain(dialect: str, batch: TableRows) -> Insert:
    shape = _shape(batch, batch.rows)
    statement = _PLAIN.get((dialect, shape))
    if statement is None:
        if batch.ignore_duplicates or batch.update_on_conflict:
            own: Any = dialect_insert(dialect, batch.table)
            if batch.update_on_conflict:
                statement = own.on_conflict_do_update(
                    index_elements=list(batch.update_on_conflict),
                    set_={name: own.excluded[name] for name in _updated(batch, shape[1])},
                )
            else:
                statement = own.on_conflict_do_nothing()
        else:
            statement = insert(batch.table)
        _PLAIN[(dialect, shape)] = statement
    return statement


def _shape(batch: TableRows, rows: list[dict[str, Any]]) -> Shape:
    return (batch.table.name, tuple(rows[0]), batch.ignore_duplicates, batch.update_on_conflict)


def _updated(batch: TableRows, columns: tuple[str, ...]) -> list[str]:
    """The columns an ``update_on_conflict`` row sets on the row it meets: all but the key."""
    return [name for name in columns if name not in batch.update_on_conflict]


def _on_conflict(batch: TableRows, columns: tuple[str, ...], quote: Any) -> str:
    if batch.update_on_conflict:
        key = ", ".join(quote(name) for name in batch.update_on_conflict)
        changes = ", ".join(
            f"{quote(name)} = EXCLUDED.{quote(name)}" for name in _updated(batch, columns)
        )
        return f" ON CONFLICT ({key}) DO UPDATE SET {changes}"
    return " ON CONFLICT DO NOTHING" if batch.ignore_duplicates else ""


_CHAINED: dict[tuple[Shape, ...], TextClause] = {}


def _chained(dialect: Dialect, batches: Sequence[TableRows]) -> tuple[TextClause, dict[str, str]]:
    """The one statement for ``batches`` (built once for each shape) and its parameters."""
    filled = [_with_defaults(batch) for batch in batches]
    shape = tuple(_shape(batch, rows) for batch, rows in zip(batches, filled, strict=True))
    statement = _CHAINED.get(shape)
    if statement is None:
        quote = dialect.identifier_preparer.quote
        steps = []
        for n, (batch, (_name, columns, *_)) in enumerate(zip(batches, shape, strict=True)):
            table = dialect.identifier_preparer.format_table(batch.table)
            names = ", ".join(quote(column) for column in columns)
            conflict = _on_conflict(batch, columns, quote)
            steps.append(
                f"t{n} AS (INSERT INTO {table} ({names}) SELECT {names} "
                f"FROM json_populate_recordset(NULL::{table}, CAST(:rows{n} AS json)){conflict})"
            )
        sql = "WITH " + ",\n".join(steps) + "\nSELECT 1"
        statement = _CHAINED[shape] = text(sql).bindparams(
            *(bindparam(f"rows{n}") for n in range(len(batches)))
        )
    parameters = {
        f"rows{n}": json.dumps(rows, default=_json_value, separators=(",", ":"))
        for n, rows in enumerate(filled)
    }
    return statement, parameters


def _with_defaults(batch: TableRows) -> list[dict[str, Any]]:
    """The rows with the Python-side defaults of the columns they leave out, as a Core insert
    would fill them (``json_populate_recordset`` would leave them NULL)."""
    given = batch.rows[0].keys()
    missing = [
        column
        for column in batch.table.columns
        if column.name not in given and column.default is not None
    ]
    if not missing:
        return batch.rows
    rows = []
    for row in batch.rows:
        extra = {}
        for column in missing:
            default: Any = column.default
            extra[column.name] = default.arg(None) if default.is_callable else default.arg
        rows.append({**row, **extra})
    return rows


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None).isoformat()
    raise TypeError(f"{type(value).__name__} cannot be written in a bulk insert")
