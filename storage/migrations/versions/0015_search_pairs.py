"""search pairs: an index of adjacent word pairs for phrase searches on PostgreSQL

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24

PostgreSQL only (SQLite's FTS5 index keeps positions and answers phrases itself):

- ``search_fts_pairs``: one narrow row per ``search_documents`` row whose ``vector`` holds,
  as lexemes without positions, every pair of tokens at adjacent positions ``p`` and ``p + 1``
  of ``search_fts`` (across fields too, as ``<->`` sees them), written ``'first second'``.
  Tokens never hold a space (``search.text``), so a pair never equals a token, and a prefix
  ``'first sec':*`` means "``first``, then a token starting with ``sec``". A pair longer than
  a lexeme may be (2047 bytes) is stored cut to its first 511 characters (at most 2044 bytes),
  which a query cut the same way, or a prefix, still finds. A document whose pairs would
  pass 512 KB (a tsvector holds at most 1 MB: long CJK mail, whose bigrams past the position
  cap all pair with the token before it) gets the single lexeme ``'!'`` instead, "pairs
  unknown", which every phrase query also accepts: such mail must still be stored, and its
  phrases are then settled by the full tsvector alone.
  GIN keeps no positions, so a phrase of two common words used to be checked against the
  full tsvector of every message holding both words; the pairs' GIN index finds the few
  holding the phrase (``search.postgres_fts`` adds it as a necessary condition; the full
  tsvector still decides). Computed from ``search_fts`` itself (``search_fts_pairs_of``), so
  it follows the tsvector's own positions exactly (position cap, skipped long words).
- Kept by a trigger on ``search_documents`` (insert, and updates of the indexed columns,
  including the ``ON CONFLICT DO UPDATE`` of a reindex, skipped when the vector is
  unchanged) in the writer's transaction, like ``search_fts_headers`` (0014); removed with
  its document by the foreign key. GIN and hash (``blob_key``) indexes.

Every object is named ``search_fts*``, the prefix the models-versus-migrations test leaves to
the engines (see 0006).
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_LEXEME_BYTES = 2047
"""PostgreSQL's limit on one lexeme; a longer pair is stored cut (as ``search.postgres_fts``
cuts the query's)."""
LONG_PAIR_CHARS = 511
MAX_PAIR_BYTES = 512 * 1024
"""Above this many bytes of pairs (duplicates counted) a document's vector is just ``'!'``."""
PAIRS_OF = (
    # plpgsql, not sql: its query plan is cached per session instead of planned on every
    # call. The join (not lead()) pairs every lexeme at p with every one at p + 1: from the
    # 16383 position cap on many lexemes share a position. The positions are unnested once
    # (materialized) and in the select list: a third less CPU than unnesting twice laterally.
    "CREATE FUNCTION search_fts_pairs_of(vector tsvector) RETURNS tsvector "
    "LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$ BEGIN RETURN ("
    "WITH t AS MATERIALIZED (SELECT lexeme, unnest(positions) AS p FROM unnest(vector)), "
    "pairs AS (SELECT CASE "
    f"WHEN octet_length(a.lexeme) + octet_length(b.lexeme) < {MAX_LEXEME_BYTES} "
    "THEN a.lexeme || ' ' || b.lexeme "
    f"ELSE left(a.lexeme || ' ' || b.lexeme, {LONG_PAIR_CHARS}) END AS pair "
    "FROM t a JOIN t b ON b.p = a.p + 1) "
    f"SELECT CASE WHEN sum(octet_length(pair)) > {MAX_PAIR_BYTES} "
    "THEN array_to_tsvector('{!}') "
    "ELSE array_to_tsvector(coalesce(array_agg(pair), '{}')) END FROM pairs); END $$"
)
POSTGRESQL_UP = [
    "CREATE TABLE search_fts_pairs ("
    "id integer PRIMARY KEY REFERENCES search_documents (id) ON DELETE CASCADE, "
    "blob_key varchar(64) NOT NULL, "
    "vector tsvector NOT NULL)",
    PAIRS_OF,
    "CREATE FUNCTION search_fts_pairs_sync() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'UPDATE' AND NEW.blob_key = OLD.blob_key AND NEW.search_fts = OLD.search_fts "
    "THEN RETURN NULL; END IF; "
    "INSERT INTO search_fts_pairs (id, blob_key, vector) VALUES (NEW.id, NEW.blob_key, "
    "search_fts_pairs_of(NEW.search_fts)) "
    "ON CONFLICT (id) DO UPDATE SET blob_key = EXCLUDED.blob_key, vector = EXCLUDED.vector; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER search_fts_pairs_sync AFTER INSERT OR UPDATE OF "
    "blob_key, subject, sender, recipients_to, recipients_cc, body, filenames "
    "ON search_documents FOR EACH ROW EXECUTE FUNCTION search_fts_pairs_sync()",
    "INSERT INTO search_fts_pairs (id, blob_key, vector) "
    "SELECT id, blob_key, search_fts_pairs_of(search_fts) FROM search_documents",
    "CREATE INDEX search_fts_pairs_gin ON search_fts_pairs USING gin (vector)",
    "CREATE INDEX search_fts_pairs_blob_hash ON search_fts_pairs USING hash (blob_key)",
    "ANALYZE search_fts_pairs",
]
POSTGRESQL_DOWN = [
    "DROP TRIGGER IF EXISTS search_fts_pairs_sync ON search_documents",
    "DROP FUNCTION IF EXISTS search_fts_pairs_sync()",
    "DROP TABLE IF EXISTS search_fts_pairs",
    "DROP FUNCTION IF EXISTS search_fts_pairs_of(tsvector)",
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
