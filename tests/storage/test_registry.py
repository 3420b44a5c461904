"""Settings URLs pick the backends; embedded defaults need no server."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.errors import ConfigurationError
from postroom.settings import Settings
from storage.blobs.files import FileBlobStore
from storage.registry import open_database, open_storage


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test passes counts: no POSTROOM_* variables, no postroom.toml nearby."""
    for name in ("DATABASE_URL", "BLOB_URL", "REDIS_URL", "DATA_DIR", "CONFIG"):
        monkeypatch.delenv(f"POSTROOM_{name}", raising=False)
    monkeypatch.chdir(tmp_path)


def test_an_unknown_database_scheme_is_named_with_the_known_ones(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="mysql://x/y")

    with pytest.raises(ConfigurationError) as raised:
        open_storage(settings)

    message = raised.value.message
    assert "'mysql'" in message
    assert "sqlite+aiosqlite://" in message
    assert "postgresql+asyncpg://" in message


def test_open_database_refuses_an_unknown_scheme() -> None:
    with pytest.raises(ConfigurationError, match="'oracle'"):
        open_database("oracle://scott@db/orcl")


async def test_an_unknown_blob_scheme_is_named_with_the_known_ones(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, blob_url="gopher://blobs.example/")

    with pytest.raises(ConfigurationError) as raised:
        open_storage(settings)

    assert "'gopher'" in raised.value.message
    assert "file://" in raised.value.message


async def test_defaults_are_sqlite_and_files_under_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = open_storage(Settings(data_dir=data_dir))
    try:
        assert store.db.engine.dialect.name == "sqlite"
        assert store.db.engine.url.database == str(data_dir / "postroom.db")

        assert isinstance(store.blobs, FileBlobStore)
        assert store.blobs.root == data_dir / "blobs"
        key = await store.blobs.put(b"hello")
        assert [p.name for p in (data_dir / "blobs").rglob("*") if p.is_file()] == [key]

        async with store.db.engine.connect():
            pass  # connecting creates the database file where the settings say
        assert (data_dir / "postroom.db").is_file()
    finally:
        await store.close()
