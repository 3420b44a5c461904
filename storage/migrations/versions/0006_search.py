"""search: full-text index tables

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

``search_documents`` is portable and in the models. What each engine builds on top of it is
not: an FTS5 external-content table kept current by triggers on SQLite, a generated tsvector
column with a GIN index on PostgreSQL. Every such object is named ``search_fts*`` so the
models-versus-migrations test can tell engine-owned objects apart.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIELDS = ("subject", "sender", "recipients_to", "recipients_cc", "body", "filenames")
_COLUMNS = ", ".join(FIELDS)
_NEW = ", ".join(f"new.{field}" for field in FIELDS)
_OLD = ", ".join(f"old.{field}" for field in FIELDS)

SQLITE_UP = [
    # unicode61 splits on the spaces search.text puts between tokens; the text is folded
    # already, so it must not strip marks again (that would merge Japanese voiced kana).
    f"CREATE VIRTUAL TABLE search_fts USING fts5({_COLUMNS}, content='search_documents', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 0')",
    f"CREATE TRIGGER search_fts_insert AFTER INSERT ON search_documents BEGIN "
    f"INSERT INTO search_fts(rowid, {_COLUMNS}) VALUES (new.id, {_NEW}); END",
    f"CREATE TRIGGER search_fts_delete AFTER DELETE ON search_documents BEGIN "
    f"INSERT INTO search_fts(search_fts, rowid, {_COLUMNS}) VALUES ('delete', old.id, {_OLD}); "
    "END",
    f"CREATE TRIGGER search_fts_update AFTER UPDATE ON search_documents BEGIN "
    f"INSERT INTO search_fts(search_fts, rowid, {_COLUMNS}) VALUES ('delete', old.id, {_OLD}); "
    f"INSERT INTO search_fts(rowid, {_COLUMNS}) VALUES (new.id, {_NEW}); END",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS search_fts_update",
    "DROP TRIGGER IF EXISTS search_fts_delete",
    "DROP TRIGGER IF EXISTS search_fts_insert",
    "DROP TABLE IF EXISTS search_fts",
]
# Weights tell the fields apart in one tsvector: A subject, B sender, C recipients, D body and
# attachment names ('simple': no stemming, no stop words; the text is normalised already).
POSTGRESQL_UP = [
    "ALTER TABLE search_documents ADD COLUMN search_fts tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('simple'::regconfig, subject), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, sender), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, recipients_to || ' ' || recipients_cc), 'C') || "
    "setweight(to_tsvector('simple'::regconfig, body || ' ' || filenames), 'D')) STORED",
    "CREATE INDEX search_fts_gin ON search_documents USING gin (search_fts)",
]
POSTGRESQL_DOWN = [
    "DROP INDEX IF EXISTS search_fts_gin",
    "ALTER TABLE search_documents DROP COLUMN IF EXISTS search_fts",
]
ENGINE_UP = {"sqlite": SQLITE_UP, "postgresql": POSTGRESQL_UP}
ENGINE_DOWN = {"sqlite": SQLITE_DOWN, "postgresql": POSTGRESQL_DOWN}


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "search_documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("blob_key", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("recipients_to", sa.Text(), nullable=False),
        sa.Column("recipients_cc", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("filenames", sa.Text(), nullable=False),
        sa.Column("indexed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["blob_key"], ["message_contents.blob_key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("blob_key"),
    )
    op.create_index("ix_messages_content_user", "messages", ["blob_key", "user_id"], unique=False)
    for statement in ENGINE_UP.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    for statement in ENGINE_DOWN.get(op.get_bind().dialect.name, []):
        op.execute(statement)
    op.drop_index("ix_messages_content_user", table_name="messages")
    op.drop_table("search_documents")
