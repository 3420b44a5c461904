"""Administrators manage domains and users over the API; everyone else gets 403."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from storage.db.models import Change, Message
from storage.repositories.accounts import find_user
from tests.support.gateway_api import PASSWORD, Api, api_for, compose

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("admin"))) as api:
        yield api


async def test_admin_manages_domains_and_users(api: Api) -> None:
    root = await api.user("root@admin.test", admin=True)
    created = await root.post("/admin/domains", json={"name": "New.Example.TEST"})
    assert created.status_code == 201
    domain = created.json()
    assert (domain["name"], domain["users"]) == ("new.example.test", 0)
    assert domain["dkim_record"].startswith("postroom._domainkey.new.example.test")
    again = await root.post("/admin/domains", json={"name": "new.example.test"})
    assert again.status_code == 409

    user = await root.post(
        "/admin/users", json={"address": "Zoe@new.example.test", "password": PASSWORD}
    )
    assert user.status_code == 201
    zoe = user.json()
    assert (zoe["address"], zoe["is_admin"]) == ("zoe@new.example.test", False)
    signed_in = await api.anonymous().post(
        "/auth/token", data={"username": "zoe@new.example.test", "password": PASSWORD}
    )
    assert signed_in.status_code == 200
    users = (await root.get("/admin/users")).json()["items"]
    assert [u["address"] for u in users] == ["root@admin.test", "zoe@new.example.test"]
    domains = {d["name"]: d["users"] for d in (await root.get("/admin/domains")).json()["items"]}
    assert domains == {"admin.test": 1, "new.example.test": 1}

    busy = await root.request("DELETE", f"/admin/domains/{domain['id']}")
    assert busy.status_code == 422
    assert "still has 1 user" in busy.json()["error"]["message"]

    async with api.store.db.session() as session:
        zoe_user = await find_user(session, "zoe@new.example.test")
    assert zoe_user is not None
    await api.deliver(zoe_user, compose("for zoe", to="zoe@new.example.test"))
    gone = await root.request("DELETE", f"/admin/users/{zoe['id']}")
    assert gone.status_code == 204
    async with api.store.db.session() as session:
        for model in (Message, Change):
            left = await session.scalar(
                select(func.count()).select_from(model).where(model.user_id == zoe["id"])
            )
            assert left == 0, model
    token = signed_in.json()["access_token"]
    after = await api.anonymous().get("/mailboxes", headers={"Authorization": f"Bearer {token}"})
    assert after.status_code == 401
    assert (await root.request("DELETE", f"/admin/users/{zoe['id']}")).status_code == 404
    assert (await root.request("DELETE", "/admin/domains/new.example.test")).status_code == 204
    assert [d["name"] for d in (await root.get("/admin/domains")).json()["items"]] == ["admin.test"]


async def test_bad_admin_input_changes_nothing(api: Api) -> None:
    root = await api.user("boss@admin.test", admin=True)
    before = (await root.get("/admin/users")).json(), (await root.get("/admin/domains")).json()
    cases = [
        ("/admin/domains", {"name": "not a domain"}, 422, "name"),
        ("/admin/users", {"address": "x@unhosted.test", "password": PASSWORD}, 404, None),
        ("/admin/users", {"address": "bad address", "password": PASSWORD}, 422, "address"),
        ("/admin/users", {"address": "y@admin.test", "password": "short"}, 422, "password"),
        ("/admin/users", {"address": "boss@admin.test", "password": PASSWORD}, 409, None),
    ]
    for url, body, status, field in cases:
        answer = await root.post(url, json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"].get("field") == field, body
    itself = await root.request("DELETE", f"/admin/users/{root.user.id}")
    assert itself.status_code == 422
    after = (await root.get("/admin/users")).json(), (await root.get("/admin/domains")).json()
    assert after == before


async def test_non_admins_get_403_everywhere_under_admin(api: Api) -> None:
    pat = await api.user("pat@admin.test")
    for method, url, body in [
        ("GET", "/admin/domains", None),
        ("POST", "/admin/domains", {"name": "evil.test"}),
        ("DELETE", "/admin/domains/admin.test", None),
        ("GET", "/admin/users", None),
        ("POST", "/admin/users", {"address": "evil@admin.test", "password": PASSWORD}),
        ("DELETE", f"/admin/users/{pat.user.id}", None),
    ]:
        answer = await pat.request(method, url, json=body)
        assert answer.status_code == 403, (method, url)
        assert answer.json()["error"]["code"] == "forbidden"
    assert (await pat.get("/mailboxes")).status_code == 200
