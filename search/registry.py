"""The one place that maps the search URL to a backend.

``POSTROOM_SEARCH_URL`` unset means the metadata database searches itself, so the database
URL's scheme picks the SQL engine; ``http(s)://`` picks OpenSearch. Adding a backend means
adding one line to :data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable

from postroom.errors import ConfigurationError
from search.backend import SearchBackend
from search.postgres_fts import postgres_search
from search.sqlite_fts import sqlite_search
from storage.registry import Storage

__all__ = ["BACKENDS", "open_search", "search_url"]

BACKENDS: dict[str, Callable[[str, Storage], SearchBackend]] = {
    "sqlite+aiosqlite": lambda _url, store: sqlite_search(store.db),
    "postgresql+asyncpg": lambda _url, store: postgres_search(store.db),
    "http": lambda url, store: _opensearch(url, store),
    "https": lambda url, store: _opensearch(url, store),
}


def _opensearch(url: str, store: Storage) -> SearchBackend:
    # Imported on use: opensearch-py costs every CLI command a second of start-up otherwise.
    from search.opensearch import OpenSearchBackend

    return OpenSearchBackend(url, store)


def search_url(store: Storage) -> str:
    return store.settings.search_url or store.settings.database_url


def open_search(store: Storage) -> SearchBackend:
    url = search_url(store)
    scheme = url.split("://", 1)[0]
    try:
        factory = BACKENDS[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in BACKENDS)
        raise ConfigurationError(
            f"search URL {url!r} has an unknown scheme {scheme!r}; use one of: {known}, "
            "or leave POSTROOM_SEARCH_URL unset to search in the metadata database"
        ) from None
    return factory(url, store)
