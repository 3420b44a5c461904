"""The web UI as the gateway serves it: the shell, its deep links, its CSP, and what stays API.

A stand-in ``web/dist`` (an ``index.html`` and one hashed asset) is served through the real
``create_app``, so these tests need no Node build; the last test reads the real build (made
by ``make test``) for what the CSP demands of it: no inline script.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import pytest
import pytest_asyncio

import gateway.app
from postroom.settings import Settings
from storage.registry import Storage
from tests.support.services import require

INDEX = (
    "<!doctype html><title>postroom</title><script type=module src=/assets/app-1a2b.js></script>"
)
SCRIPT = "console.log('postroom')"
REALTIME_PORT = 18999


def _client(
    dist: Path, monkeypatch: pytest.MonkeyPatch, public_url: str | None = None
) -> httpx.AsyncClient:
    monkeypatch.setattr(gateway.app, "WEB_DIST", dist)
    settings = Settings(
        realtime_port=REALTIME_PORT, send_undo_seconds=7, realtime_public_url=public_url
    )
    # Only settings are read on these paths, so the storage need not be opened.
    app = gateway.app.create_app(cast(Storage, SimpleNamespace(settings=settings)))
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://mail.example.test:8080")


@pytest_asyncio.fixture
async def client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "app-1a2b.js").write_text(SCRIPT)
    async with _client(tmp_path, monkeypatch) as client:
        yield client


def _policy(header: str) -> dict[str, list[str]]:
    directives = [d.split() for d in header.split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


async def test_the_shell_carries_a_strict_content_security_policy(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.get("/")
    assert answer.status_code == 200
    assert answer.text == INDEX
    policy = _policy(answer.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]  # no inline script, no eval, no other origin
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    realtime = f"mail.example.test:{REALTIME_PORT}"
    assert policy["connect-src"] == ["'self'", f"ws://{realtime}", f"wss://{realtime}"]
    assert "about:" in policy["frame-src"]  # message bodies are srcdoc iframes
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-cache"


async def test_deep_links_get_the_app(client: httpx.AsyncClient) -> None:
    for path in ("/mail/inbox", "/mail/archive/0192f7a0c3e1", "/search?q=from%3Aann"):
        answer = await client.get(path)
        assert answer.status_code == 200, path
        assert answer.text == INDEX
        assert "script-src 'self'" in answer.headers["content-security-policy"]


async def test_assets_are_files_and_missing_ones_are_not_the_app(client: httpx.AsyncClient) -> None:
    script = await client.get("/assets/app-1a2b.js")
    assert script.status_code == 200
    assert script.text == SCRIPT
    assert "immutable" in script.headers["cache-control"]
    assert (await client.get("/assets/gone-9z9z.js")).status_code == 404
    assert (await client.get("/no-such-page")).status_code == 404


async def test_the_api_and_its_docs_stay_what_they_were(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/api/v1/no-such-route")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert (await client.get("/api/v1/mailboxes")).status_code == 401
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers  # Swagger UI loads its own scripts
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "postroom"


async def test_client_config_is_public(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/v1/client-config")
    assert answer.status_code == 200
    assert answer.json() == {
        "realtime": {"port": REALTIME_PORT, "path": "/ws", "url": None},
        "send_undo_seconds": 7.0,
        "max_message_size": Settings().max_message_size,
    }


async def test_behind_a_proxy_the_page_is_sent_to_the_public_websocket_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "index.html").write_text(INDEX)
    url = "wss://mail.example.com/ws"
    async with _client(tmp_path, monkeypatch, public_url=url) as client:
        config = (await client.get("/api/v1/client-config")).json()
        policy = _policy((await client.get("/")).headers["content-security-policy"])
    assert config["realtime"]["url"] == url
    assert policy["connect-src"] == ["'self'", url]


async def test_a_strange_host_header_never_reaches_the_policy(client: httpx.AsyncClient) -> None:
    answer = await client.get("/", headers={"Host": "evil.test; script-src *"})
    policy = answer.headers["content-security-policy"]
    assert "evil" not in policy
    assert _policy(policy)["connect-src"] == ["'self'"]
    assert _policy(policy)["script-src"] == ["'self'"]


async def test_without_a_build_the_root_points_to_the_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _client(tmp_path / "missing", monkeypatch) as client:
        answer = await client.get("/")
    assert answer.status_code == 200
    assert 'href="/docs"' in answer.text


def test_the_real_build_has_no_inline_script() -> None:
    built = Path(gateway.app.__file__).resolve().parent.parent / "web" / "dist" / "index.html"
    require(built.is_file(), "web/dist is not built (make test builds it: npm ci, npm run build)")
    page = built.read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, flags=re.S)
    assert scripts, "the shell loads its code with a <script src>"
    for attributes, body in scripts:
        assert 'src="/assets/' in attributes and not body.strip(), attributes
