"""search speed: a narrow header index, a hash lookup by content, planner statistics

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24

PostgreSQL only (SQLite's FTS5 table already filters columns and needs none of it):

- ``search_fts_headers``: one narrow row per ``search_documents`` row with the tsvector of its
  subject, sender and recipients alone, weighted as in ``search_fts`` (A, B, C). Those come
  first in ``search_fts``, so lexemes, weights and positions are the same: the same matches
  and ranks. A ``from:`` or ``subject:`` search walks this ~25 MB table (at 100 000
  messages) instead of the wide document rows (bodies, full tsvectors), whose pages do not
  stay cached; 2-4x faster. Kept by a trigger on ``search_documents`` (insert, and updates of
  those columns, including the ``ON CONFLICT DO UPDATE`` of a reindex) in the writer's
  transaction, removed with its document by the foreign key.
- ``search_fts_blob_hash`` (and the headers' own): a newest-first walk looks up one document
  per message by ``blob_key``; a hash index finds it without the dozens of collation-aware
  comparisons of a B-tree descent on 64-character keys (about half of the walk's time).
- ``search_fts_messages_user_box``: a mailbox belongs to one user, which the planner cannot
  know; without it it underestimates ``in:inbox`` of a user by the number of users and scans
  the whole mailbox instead of walking it newest first.

Every object is named ``search_fts*``, the prefix the models-versus-migrations test leaves to
the engines (see 0006).
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HEADER_VECTOR = (
    "setweight(to_tsvector('simple'::regconfig, {row}subject), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, {row}sender), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, {row}recipients_to || ' ' || "
    "{row}recipients_cc), 'C')"
)
POSTGRESQL_UP = [
    "CREATE TABLE search_fts_headers ("
    "id integer PRIMARY KEY REFERENCES search_documents (id) ON DELETE CASCADE, "
    "blob_key varchar(64) NOT NULL, "
    "vector tsvector NOT NULL)",
    "CREATE FUNCTION search_fts_headers_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO search_fts_headers (id, blob_key, vector) VALUES (NEW.id, NEW.blob_key, "
    + HEADER_VECTOR.format(row="NEW.")
    + ") ON CONFLICT (id) DO UPDATE SET blob_key = EXCLUDED.blob_key, vector = EXCLUDED.vector; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER search_fts_headers_sync AFTER INSERT OR UPDATE OF "
    "blob_key, subject, sender, recipients_to, recipients_cc ON search_documents "
    "FOR EACH ROW EXECUTE FUNCTION search_fts_headers_sync()",
    "INSERT INTO search_fts_headers (id, blob_key, vector) SELECT id, blob_key, "
    + HEADER_VECTOR.format(row="")
    + " FROM search_documents",
    "CREATE INDEX search_fts_headers_gin ON search_fts_headers USING gin (vector)",
    "CREATE INDEX search_fts_headers_blob_hash ON search_fts_headers USING hash (blob_key)",
    "CREATE INDEX search_fts_blob_hash ON search_documents USING hash (blob_key)",
    "CREATE STATISTICS search_fts_messages_user_box (dependencies) "
    "ON user_id, mailbox_id FROM messages",
    "ANALYZE messages",
    "ANALYZE search_fts_headers",
]
POSTGRESQL_DOWN = [
    "DROP STATISTICS IF EXISTS search_fts_messages_user_box",
    "DROP INDEX IF EXISTS search_fts_blob_hash",
    "DROP TRIGGER IF EXISTS search_fts_headers_sync ON search_documents",
    "DROP FUNCTION IF EXISTS search_fts_headers_sync()",
    "DROP TABLE IF EXISTS search_fts_headers",
]


def upgrade() -> None:
    """Upgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_UP:
            op.execute(statement)


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_DOWN:
            op.execute(statement)
