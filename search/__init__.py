"""Full-text search of mail: the query language, text normalisation, indexing and backends.

See README.md here: ``query`` parses, ``text`` normalises, ``documents`` writes the index rows,
``registry`` picks the backend (SQLite FTS5, PostgreSQL tsvector, OpenSearch), ``service`` runs
a search as the API does.
"""
