"""Full-text search of mail: indexing and the query language. Built by the search issue."""
