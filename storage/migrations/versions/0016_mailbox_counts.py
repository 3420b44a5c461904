"""mailbox counts: each mailbox keeps its total and unread, kept by triggers on messages

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24

A mailbox's counts were counted from ``ix_messages_counts`` whenever they were needed: the
mailbox list counted every message of the user, and every change logged its mailbox's counts
by counting that mailbox (a send counted its sender's Sent). That is linear in the mailbox:
marking one message read in an Inbox of 100 000 counted 100 000 index entries.

Now ``mailboxes.total`` and ``mailboxes.unread`` hold them, kept by triggers on ``messages``
in the writer's own transaction, so no write path (bulk inserts, moves, flag changes,
deletes, cascades) can forget them:

- SQLite: one row trigger each for insert, delete, and an update that changes
  ``mailbox_id`` or ``seen``.
- PostgreSQL: statement triggers with transition tables, so a bulk statement updates each
  mailbox it touched once. Before touching a mailbox row the trigger takes its user's row
  lock (``FOR NO KEY UPDATE``, the lock a change-log bump takes), so every transaction locks
  a user before that user's mailboxes and two of them cannot wait on each other in the
  opposite order (a send bumps first and files its copy after; filing new mail and moving
  messages change messages first and bump after).

Existing counts are computed once here. ``ix_messages_counts`` (0009) is left in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = (
    "UPDATE mailboxes SET "
    "total = (SELECT count(*) FROM messages WHERE messages.mailbox_id = mailboxes.id), "
    "unread = (SELECT count(*) FROM messages "
    "WHERE messages.mailbox_id = mailboxes.id AND messages.seen = {false})"
)

_ADD = "UPDATE mailboxes SET total = total + 1, unread = unread + (NEW.seen = 0) "
_TAKE = "UPDATE mailboxes SET total = total - 1, unread = unread - (OLD.seen = 0) "
SQLITE_UP = [
    "CREATE TRIGGER mailbox_counts_insert AFTER INSERT ON messages BEGIN "
    f"{_ADD}WHERE id = NEW.mailbox_id; END",
    "CREATE TRIGGER mailbox_counts_delete AFTER DELETE ON messages BEGIN "
    f"{_TAKE}WHERE id = OLD.mailbox_id; END",
    "CREATE TRIGGER mailbox_counts_update AFTER UPDATE OF mailbox_id, seen ON messages "
    "WHEN OLD.mailbox_id IS NOT NEW.mailbox_id OR OLD.seen IS NOT NEW.seen BEGIN "
    f"{_TAKE}WHERE id = OLD.mailbox_id; {_ADD}WHERE id = NEW.mailbox_id; END",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS mailbox_counts_update",
    "DROP TRIGGER IF EXISTS mailbox_counts_delete",
    "DROP TRIGGER IF EXISTS mailbox_counts_insert",
]

_LOCK_USERS = (
    "PERFORM 1 FROM users WHERE id IN (SELECT user_id FROM {rows}) ORDER BY id FOR NO KEY UPDATE; "
)
_APPLY = (
    "UPDATE mailboxes SET total = mailboxes.total + d.total, "
    "unread = mailboxes.unread + d.unread FROM ("
    "SELECT mailbox_id, sum(total) AS total, sum(unread) AS unread FROM ({deltas}) AS x "
    "GROUP BY mailbox_id HAVING sum(total) <> 0 OR sum(unread) <> 0) AS d "
    "WHERE mailboxes.id = d.mailbox_id; "
)
_PLUS = "SELECT mailbox_id, 1 AS total, (NOT seen)::int AS unread FROM new_rows"
_MINUS = "SELECT mailbox_id, -1 AS total, -((NOT seen)::int) AS unread FROM old_rows"
POSTGRESQL_UP = [
    "CREATE FUNCTION mailbox_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    + _LOCK_USERS.format(rows="new_rows")
    + _APPLY.format(deltas=_PLUS)
    + "RETURN NULL; END $$",
    "CREATE FUNCTION mailbox_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    + _LOCK_USERS.format(rows="old_rows")
    + _APPLY.format(deltas=_MINUS)
    + "RETURN NULL; END $$",
    # an update's rows are compared first: a statement that moved nothing and changed no
    # seen flag (most flag changes) leaves the mailboxes and the users' locks alone
    "CREATE FUNCTION mailbox_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NOT EXISTS (SELECT 1 FROM new_rows n JOIN old_rows o ON o.id = n.id "
    "WHERE o.mailbox_id <> n.mailbox_id OR o.seen <> n.seen) THEN RETURN NULL; END IF; "
    + _LOCK_USERS.format(rows="new_rows")
    + _APPLY.format(deltas=f"{_PLUS} UNION ALL {_MINUS}")
    + "RETURN NULL; END $$",
    "CREATE TRIGGER mailbox_counts_insert AFTER INSERT ON messages "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION mailbox_counts_insert()",
    "CREATE TRIGGER mailbox_counts_delete AFTER DELETE ON messages "
    "REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION mailbox_counts_delete()",
    "CREATE TRIGGER mailbox_counts_update AFTER UPDATE ON messages "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION mailbox_counts_update()",
]
POSTGRESQL_DOWN = [
    "DROP TRIGGER IF EXISTS mailbox_counts_update ON messages",
    "DROP TRIGGER IF EXISTS mailbox_counts_delete ON messages",
    "DROP TRIGGER IF EXISTS mailbox_counts_insert ON messages",
    "DROP FUNCTION IF EXISTS mailbox_counts_update()",
    "DROP FUNCTION IF EXISTS mailbox_counts_delete()",
    "DROP FUNCTION IF EXISTS mailbox_counts_insert()",
]


def upgrade() -> None:
    """Upgrade schema."""
    # plain ALTER TABLE on both engines (SQLite 3.35+ drops columns too): a batch copy of
    # mailboxes on SQLite would drop the table and, with foreign keys on, every message in it
    for name in ("total", "unread"):
        column = sa.Column(name, sa.Integer(), server_default="0", nullable=False)
        op.add_column("mailboxes", column)
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(BACKFILL.format(false="false" if postgresql else "0"))
    for statement in POSTGRESQL_UP if postgresql else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_DOWN if postgresql else SQLITE_DOWN:
        op.execute(statement)
    op.drop_column("mailboxes", "unread")
    op.drop_column("mailboxes", "total")
