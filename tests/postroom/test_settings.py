"""Settings (issue 2, point 3): the names DESIGN.md lists, from env and postroom.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom.settings import Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the real environment; start each test from none of ours."""
    import os

    for name in list(os.environ):
        if name.startswith("POSTROOM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_embedded_defaults() -> None:
    settings = Settings()
    data = Path("data").resolve()
    assert settings.data_dir == data
    assert settings.database_url == f"sqlite+aiosqlite:///{data / 'postroom.db'}"
    assert settings.blob_url == f"file://{data / 'blobs'}"
    assert settings.redis_url is None
    assert settings.search_url is None
    assert (settings.http_port, settings.smtp_port) == (8080, 2525)
    assert (settings.submission_port, settings.realtime_port) == (2587, 8081)
    assert settings.delivery_port == 25
    assert settings.nameservers == []
    assert settings.hostname


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POSTROOM_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("POSTROOM_DATABASE_URL", "postgresql+asyncpg://u@db/postroom")
    monkeypatch.setenv("POSTROOM_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("POSTROOM_BLOB_URL", "s3://mail")
    monkeypatch.setenv("POSTROOM_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("POSTROOM_SEARCH_URL", "http://127.0.0.1:9200")
    monkeypatch.setenv("POSTROOM_HTTP_PORT", "9080")
    monkeypatch.setenv("POSTROOM_SMTP_PORT", "25")
    monkeypatch.setenv("POSTROOM_SUBMISSION_PORT", "587")
    monkeypatch.setenv("POSTROOM_REALTIME_PORT", "9081")
    monkeypatch.setenv("POSTROOM_HOSTNAME", "mx.example.com")
    monkeypatch.setenv("POSTROOM_DNS_NAMESERVERS", "127.0.0.1:5353, 10.0.0.1")
    monkeypatch.setenv("POSTROOM_DELIVERY_PORT", "2526")
    settings = Settings()
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.database_url == "postgresql+asyncpg://u@db/postroom"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.blob_url == "s3://mail"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.search_url == "http://127.0.0.1:9200"
    assert (settings.http_port, settings.smtp_port, settings.submission_port) == (9080, 25, 587)
    assert settings.realtime_port == 9081
    assert settings.hostname == "mx.example.com"
    assert settings.nameservers == [("127.0.0.1", 5353), ("10.0.0.1", 53)]
    assert settings.delivery_port == 2526


def test_toml_file_and_environment_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("postroom.toml").write_text('http_port = 7000\nhostname = "from-toml.example"\n')
    monkeypatch.setenv("POSTROOM_HOSTNAME", "from-env.example")
    settings = Settings()
    assert settings.http_port == 7000
    assert settings.hostname == "from-env.example"


def test_a_malformed_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_HTTP_PORT", "eighty")
    with pytest.raises(ValueError, match="http_port"):
        Settings()
