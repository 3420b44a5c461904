"""Signing in and out: opaque bearer tokens, stored hashed, that expire and can be revoked."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from storage.db.models import AuthToken
from storage.db.types import utcnow
from storage.repositories.tokens import issue_token
from tests.support.gateway_api import PASSWORD, Api, api_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("auth"))) as api:
        yield api


async def test_password_sign_in_gives_a_token_that_works(api: Api) -> None:
    ann = await api.user("ann@auth.test")
    answer = await api.anonymous().post(
        "/auth/token", data={"username": "ANN@auth.test", "password": PASSWORD}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == api.store.settings.token_ttl_seconds
    listed = await api.anonymous().get(
        "/mailboxes", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert listed.status_code == 200
    assert {m["role"] for m in listed.json()["items"]} >= {"inbox", "sent", "trash"}
    assert ann.user.address == "ann@auth.test"


async def test_only_the_hash_of_a_token_is_stored(api: Api) -> None:
    bob = await api.user("bob@auth.test")
    async with api.store.db.session() as session:
        hashes = list(
            await session.scalars(
                select(AuthToken.token_hash).where(AuthToken.user_id == bob.user.id)
            )
        )
    assert hashes == [hashlib.sha256(bob.token.encode()).hexdigest()]
    assert bob.token not in hashes


async def test_wrong_credentials_are_401_and_issue_nothing(api: Api) -> None:
    await api.user("cat@auth.test")
    async with api.store.db.session() as session:
        before = list(await session.scalars(select(AuthToken.id)))
    for username, password in [
        ("cat@auth.test", "wrong password"),
        ("nobody@auth.test", PASSWORD),
        ("CAT@auth.test", "correct horse batter"),
    ]:
        answer = await api.anonymous().post(
            "/auth/token", data={"username": username, "password": password}
        )
        assert answer.status_code == 401, (username, password)
        assert answer.json()["error"]["message"] == "wrong address or password"
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    async with api.store.db.session() as session:
        assert list(await session.scalars(select(AuthToken.id))) == before


async def test_no_token_or_a_garbled_one_is_401(api: Api) -> None:
    http = api.anonymous()
    assert (await http.get("/mailboxes")).status_code == 401
    garbled = await http.get("/mailboxes", headers={"Authorization": "Bearer prt_nonsense"})
    assert garbled.status_code == 401
    assert garbled.json()["error"]["code"] == "unauthorized"


async def test_logout_revokes_the_token_used_and_only_it(api: Api) -> None:
    dan = await api.user("dan@auth.test")
    other_session = await api.sign_in(dan.user)
    out = await dan.post("/auth/logout")
    assert out.status_code == 204
    again = await dan.get("/mailboxes")
    assert again.status_code == 401
    assert "revoked" in again.json()["error"]["message"]
    assert (await other_session.get("/mailboxes")).status_code == 200


async def test_an_expired_token_is_401(api: Api) -> None:
    """Even right after it was used (and remembered by the gateway) until its last second."""
    eve = await api.user("eve@auth.test")
    async with api.store.db.session() as session, session.begin():
        secret, token = await issue_token(session, eve.user.id, ttl_seconds=3)
    eve.http.headers["Authorization"] = f"Bearer {secret}"
    assert (await eve.get("/mailboxes")).status_code == 200
    assert token.expires_at is not None
    await asyncio.sleep((token.expires_at - utcnow()).total_seconds() + 0.1)
    expired = await eve.get("/mailboxes")
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]


async def test_with_the_token_cache_on_revocation_here_is_still_immediate(
    database_url: str, tmp_path: Path
) -> None:
    """POSTROOM_TOKEN_CACHE_SECONDS trades cross-process revocation delay for speed; the
    process that revokes (a logout, a key revoked over the API) never accepts the token again.
    """
    async with api_for(database_url, tmp_path, token_cache_seconds=30) as cached:
        fay = await cached.user("fay@auth.test")
        assert (await fay.get("/mailboxes")).status_code == 200  # now remembered
        key = (await fay.post("/keys", json={"name": "script"})).json()
        script = cached.anonymous()
        script.headers["Authorization"] = f"Bearer {key['key']}"
        assert (await script.get("/mailboxes")).status_code == 200  # remembered too

        assert (await fay.request("DELETE", f"/keys/{key['id']}")).status_code == 200
        assert (await script.get("/mailboxes")).status_code == 401
        assert (await fay.post("/auth/logout")).status_code == 204
        assert (await fay.get("/mailboxes")).status_code == 401
