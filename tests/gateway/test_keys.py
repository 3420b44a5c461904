"""API keys: created (secret shown once), listed without secrets, revoked; over the API and CLI."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from storage.db.models import AuthToken
from tests.support.gateway_api import Api, api_for
from tests.support.platform import Platform

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("keys"))) as api:
        yield api


async def test_create_use_list_and_revoke_a_key(api: Api) -> None:
    ann = await api.user("ann@keys.test")
    created = await ann.post("/keys", json={"name": "backup script"})
    assert created.status_code == 201
    key = created.json()
    assert key["name"] == "backup script"
    assert key["key"].startswith("prk_")
    assert key["revoked_at"] is None

    client = api.anonymous()
    client.headers["Authorization"] = f"Bearer {key['key']}"
    assert (await client.get("/mailboxes")).status_code == 200

    listed = (await ann.get("/keys")).json()["items"]
    assert [(k["id"], k["name"]) for k in listed] == [(key["id"], "backup script")]
    assert all("key" not in k for k in listed)  # shown once, at creation
    async with api.store.db.session() as session:
        stored = await session.scalar(select(AuthToken).where(AuthToken.id == key["id"]))
    assert stored is not None
    assert stored.token_hash == hashlib.sha256(key["key"].encode()).hexdigest()
    assert stored.expires_at is None

    revoked = await ann.request("DELETE", f"/keys/{key['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    refused = await client.get("/mailboxes")
    assert refused.status_code == 401
    assert (await ann.get("/keys")).json()["items"][0]["revoked_at"] is not None
    assert (await ann.get("/mailboxes")).status_code == 200  # the session is untouched


async def test_session_tokens_are_not_keys_and_names_are_checked(api: Api) -> None:
    bob = await api.user("bob@keys.test")
    assert (await bob.get("/keys")).json()["items"] == []
    for bad in ["", "   ", "tab\there"]:
        answer = await bob.post("/keys", json={"name": bad})
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["field"] == "name"
    assert (await bob.get("/keys")).json()["items"] == []
    assert (await bob.request("DELETE", "/keys/nonexistent")).status_code == 404


async def test_cli_creates_lists_and_revokes_keys(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'postroom.db'}"
    cli = Platform(tmp_path, url).cli  # the real console script, on this database
    async with api_for(url, tmp_path) as api:
        await api.user("ann@cli.test")
        created = await asyncio.to_thread(
            cli, "apikey", "create", "ann@cli.test", "--name", "cron job"
        )
        assert created.returncode == 0, created.stderr
        heading, secret = created.stdout.strip().splitlines()
        assert "shown only now" in heading
        assert secret.startswith("prk_")
        key_id = heading.split()[2]
        client = api.anonymous()
        client.headers["Authorization"] = f"Bearer {secret}"
        assert (await client.get("/mailboxes")).status_code == 200

        listed = await asyncio.to_thread(cli, "apikey", "list", "ann@cli.test")
        assert listed.returncode == 0, listed.stderr
        fields = listed.stdout.rstrip("\n").split("\t")
        assert (fields[0], fields[2], fields[3]) == (key_id, "active", "cron job")
        assert secret not in listed.stdout

        revoked = await asyncio.to_thread(cli, "apikey", "revoke", "ann@cli.test", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert (await client.get("/mailboxes")).status_code == 401

        bad = await asyncio.to_thread(cli, "apikey", "revoke", "ann@cli.test", "nope")
        assert bad.returncode == 2
        assert bad.stderr == "postroom: error: no API key nope\n"
