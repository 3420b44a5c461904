"""Templates: declared variables, sandboxed rendering, and 422 naming what a send left out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from storage.db.models import OutboundMessage
from tests.support.gateway_api import Api, Client, api_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

WELCOME: dict[str, Any] = {
    "name": "welcome",
    "subject": "Welcome, {{ name }}",
    "text": "Hello {{ name }}, your plan is {{ plan }}.",
    "html": "<p>Hello {{ name }}</p>",
    "variables": ["name", "plan"],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("tpl"))) as api:
        yield api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ann(api: Api) -> Client:
    return await api.user("ann@tpl.test")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def welcome(ann: Client) -> dict[str, Any]:
    created = await ann.post("/templates", json=WELCOME)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def _sends(api: Api) -> int:
    async with api.store.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboundMessage)) or 0)


async def test_send_fills_the_template(ann: Client, welcome: dict[str, Any]) -> None:
    answer = await ann.post(
        "/send",
        json={
            "to": ["zed@remote.test"],
            "template_id": welcome["id"],
            "variables": {"name": "Zed <&>", "plan": "gold"},
        },
    )
    assert answer.status_code == 202, answer.text
    raw = (await ann.get(f"/messages/{answer.json()['message_id']}/raw")).content
    message = message_from_bytes(raw, policy=default)
    assert message["Subject"] == "Welcome, Zed <&>"
    parts = {p.get_content_type(): p.get_content() for p in message.walk() if not p.is_multipart()}
    assert parts["text/plain"].strip() == "Hello Zed <&>, your plan is gold."
    assert parts["text/html"].strip() == "<p>Hello Zed &lt;&amp;&gt;</p>"  # autoescaped


async def test_missing_variables_are_named_and_nothing_is_sent(
    api: Api, ann: Client, welcome: dict[str, Any]
) -> None:
    before = await _sends(api)
    answer = await ann.post("/send", json={"to": ["zed@remote.test"], "template_id": welcome["id"]})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["field"] == "variables"
    assert "name, plan" in error["message"]
    partial = await ann.post(
        "/send",
        json={"to": ["zed@remote.test"], "template_id": welcome["id"], "variables": {"name": "Z"}},
    )
    assert partial.status_code == 422
    assert partial.json()["error"]["message"].endswith("needs values for: plan")
    assert await _sends(api) == before


async def test_a_value_cannot_inject_a_header(
    api: Api, ann: Client, welcome: dict[str, Any]
) -> None:
    before = await _sends(api)
    answer = await ann.post(
        "/send",
        json={
            "to": ["zed@remote.test"],
            "template_id": welcome["id"],
            "variables": {"name": "x\r\nBcc: victim@remote.test", "plan": "p"},
        },
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "subject"
    assert await _sends(api) == before


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"text": "Hi {{ nmae }}"}, "variables", "not declared in variables: nmae"),
        ({"text": "Hi {{ name"}, "text", "syntax error"),
        ({"variables": ["name", "not-a-name"]}, "variables[1]", "not a variable name"),
        ({"text": None, "html": None}, "text", "text or an html body"),
    ],
)
async def test_a_bad_template_is_refused(
    ann: Client, change: dict[str, Any], field: str, problem: str
) -> None:
    answer = await ann.post("/templates", json={**WELCOME, "name": "bad", **change})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert problem in answer.json()["error"]["message"]


async def test_the_sandbox_refuses_python_internals(ann: Client) -> None:
    created = await ann.post(
        "/templates",
        json={
            "name": "sneaky",
            "text": "{{ name.__class__.__mro__[1].__subclasses__() }}",
            "variables": ["name"],
        },
    )
    assert created.status_code == 201
    answer = await ann.post(
        "/send",
        json={
            "to": ["zed@remote.test"],
            "template_id": created.json()["id"],
            "variables": {"name": "x"},
        },
    )
    assert answer.status_code == 422
    assert "could not be filled" in answer.json()["error"]["message"]


async def test_crud_and_ownership(api: Api, ann: Client) -> None:
    created = (await ann.post("/templates", json={**WELCOME, "name": "note"})).json()
    assert (await ann.post("/templates", json={**WELCOME, "name": "note"})).status_code == 409
    changed = await ann.request(
        "PUT",
        f"/templates/{created['id']}",
        json={**WELCOME, "name": "note", "subject": "Note for {{ name }}"},
    )
    assert changed.status_code == 200
    assert (await ann.get(f"/templates/{created['id']}")).json()["subject"] == (
        "Note for {{ name }}"
    )
    assert "note" in [t["name"] for t in (await ann.get("/templates")).json()["items"]]

    bob = await api.user("bob@tpl.test")
    assert (await bob.get(f"/templates/{created['id']}")).status_code == 404
    used = await bob.post(
        "/send",
        json={
            "to": ["zed@remote.test"],
            "template_id": created["id"],
            "variables": {"name": "a", "plan": "b"},
        },
    )
    assert used.status_code == 422
    assert used.json()["error"]["field"] == "template_id"
    assert (await bob.request("DELETE", f"/templates/{created['id']}")).status_code == 404

    assert (await ann.request("DELETE", f"/templates/{created['id']}")).status_code == 204
    assert (await ann.get(f"/templates/{created['id']}")).status_code == 404
