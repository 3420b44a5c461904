"""Every route with an id in its path answers another user's id with 404, as if it never was.

The cases are generated from the app's route table, not listed by hand, so a route added
tomorrow is covered the day it appears. Each path parameter is filled through a factory that
makes a real thing of that kind for a given user (``FACTORIES``, keyed by the parameter's
name): user A then asks for user B's thing on every method of the route and must get 404, and
B's own request for it must not be a 404 (otherwise the ids proved nothing). Administrator-only
routes are platform-wide, not owned: a non-administrator gets 403 there.

A route whose parameter has no factory fails with instructions: add one below.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.app import create_app
from gateway.deps import admin_user
from postroom.settings import Settings
from storage.db.models import Message
from storage.registry import Storage
from tests.support.gateway_api import Api, Client, api_for, compose

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Owner:
    """A user whose things the factories make; ``peer`` is someone to send mail to."""

    api: Api
    client: Client
    peer: Client
    _message: Message | None = None

    async def message(self) -> Message:
        if self._message is None:
            raw = compose(
                "owned",
                to=self.client.user.address,
                attachments=[("a.txt", "text/plain", b"attached")],
            )
            self._message = await self.api.deliver(self.client.user, raw)
        return self._message

    def fresh(self) -> Owner:
        """The same user, with new things made on next request (for a destructive call)."""
        return Owner(self.api, self.client, self.peer)


Factory = Callable[[Owner], Awaitable[str]]
_SERIAL = itertools.count()


async def _json(client: Client, method: str, url: str, body: Any) -> dict[str, Any]:
    answer = await client.request(method, url, json=body)
    assert answer.is_success, f"factory call {method} {url} failed: {answer.text}"
    result: dict[str, Any] = answer.json()
    return result


async def _message_id(owner: Owner) -> str:
    return (await owner.message()).id


async def _thread_id(owner: Owner) -> str:
    return (await owner.message()).thread_id


async def _attachment_id(owner: Owner) -> str:
    message = await owner.message()
    detail = await _json(owner.client, "GET", f"/messages/{message.id}", None)
    attachment_id: str = detail["attachments"][0]["id"]
    return attachment_id


async def _mailbox_id(owner: Owner) -> str:
    name = f"folder {next(_SERIAL)}"
    return str((await _json(owner.client, "POST", "/mailboxes", {"name": name}))["id"])


async def _key_id(owner: Owner) -> str:
    return str((await _json(owner.client, "POST", "/keys", {"name": "ownership"}))["id"])


async def _outbound_id(owner: Owner) -> str:
    body = {"to": [owner.peer.user.address], "subject": "owned", "text": "hi"}
    return str((await _json(owner.client, "POST", "/send", body))["id"])


def _created_by(collection: str) -> Factory:
    """Make one through ``POST collection`` with the first example of its documented body."""

    async def make(owner: Owner) -> str:
        body = _example_body(owner.api.app, "post", f"/api/v1{collection}")
        if isinstance(body, dict) and isinstance(body.get("name"), str):
            body = {**body, "name": f"{body['name']}-{next(_SERIAL)}"}  # names are unique
        return str((await _json(owner.client, "POST", collection, body))["id"])

    return make


FACTORIES: dict[str, Factory] = {
    "message_id": _message_id,
    "thread_id": _thread_id,
    "attachment_id": _attachment_id,
    "mailbox_id": _mailbox_id,
    "key_id": _key_id,
    "outbound_id": _outbound_id,
    "draft_id": _created_by("/drafts"),
    "template_id": _created_by("/templates"),
}


def _is_admin_only(dependant: Dependant) -> bool:
    return any(d.call is admin_user or _is_admin_only(d) for d in dependant.dependencies)


def _example_body(app: FastAPI, method: str, path: str) -> Any:
    """The first documented example of the JSON body of ``method path``, or None if bodiless."""
    document = app.openapi()
    operation = document["paths"][path][method]
    body = operation.get("requestBody")
    if body is None:
        return None
    content = body.get("content", {}).get("application/json")
    if content is None:
        pytest.fail(f"{method.upper()} {path} takes no JSON body; teach {__name__} to fill it")
    if "example" in content:
        return content["example"]
    schema = content["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    examples = schema.get("examples") or []
    if not examples:
        pytest.fail(
            f"{method.upper()} {path}: its body schema has no example. Give the request model "
            "json_schema_extra={'examples': [...]} (the OpenAPI document needs it too)."
        )
    return examples[0]


def _routes(app: FastAPI) -> Iterator[tuple[str, APIRoute, list[str]]]:
    """(full path, route, path parameter names) of every API route, nested routers included."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path:
            yield context.path, route, list(context.param_convertors)


def _cases() -> list[tuple[str, str]]:
    """(method, path) of every API route with a path parameter, from the route table."""
    # Only the route table is read, so the storage need not be opened: settings are enough.
    app = create_app(cast(Storage, SimpleNamespace(settings=Settings())))
    return [
        (method, path)
        for path, route, names in _routes(app)
        if names
        for method in sorted(route.methods - {"HEAD"})
    ]


def _route(app: FastAPI, method: str, path: str) -> tuple[APIRoute, list[str]]:
    for full, route, names in _routes(app):
        if full == path and method in route.methods:
            return route, names
    raise AssertionError(f"{method} {path} is gone from the route table")


@dataclass
class World:
    api: Api
    ann: Owner
    bob: Owner


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("ownership"))) as api:
        ann = await api.user("ann@owners.test")
        bob = await api.user("bob@owners.test")
        yield World(api, Owner(api, ann, bob), Owner(api, bob, ann))


async def _ids(owner: Owner, names: list[str], method: str, path: str) -> dict[str, str]:
    ids = {}
    for name in names:
        factory = FACTORIES.get(name)
        if factory is None:
            pytest.fail(
                f"{method} {path} has the path parameter {name!r}, which {__name__} does not "
                f"know how to fill. Add FACTORIES[{name!r}]: an async function that makes one "
                "such thing for the given Owner (through the API where possible) and returns "
                "its id, so this test can prove another user gets 404 for it."
            )
        ids[name] = await factory(owner)
    return ids


@pytest.mark.parametrize(("method", "path"), _cases(), ids=lambda v: str(v))
async def test_another_users_id_is_404(world: World, method: str, path: str) -> None:
    app = world.api.app
    route, names = _route(app, method, path)
    body = _example_body(app, method.lower(), path)
    url = path.removeprefix("/api/v1")
    if _is_admin_only(route.dependant):
        filled = url.format(**{n: "anything" for n in names})
        answer = await world.ann.client.request(method, filled, json=body)
        assert answer.status_code == 403, f"{method} {filled}: {answer.text}"
        return

    theirs = await _ids(world.bob, names, method, path)
    mine = await _ids(world.ann, names, method, path)
    for swapped in names:  # B's id in one place, A's own ids everywhere else
        filled = url.format(**{**mine, swapped: theirs[swapped]})
        answer = await world.ann.client.request(method, filled, json=body)
        assert answer.status_code == 404, (
            f"user A got {answer.status_code} for user B's {swapped} on {method} {filled}: "
            f"{answer.text}"
        )
        assert answer.json()["error"]["code"] == "not_found"

    owner = world.bob if method == "GET" else world.bob.fresh()
    own = url.format(**await _ids(owner, names, method, path))
    answer = await owner.client.request(method, own, json=body)
    assert answer.status_code != 404 and answer.status_code < 500, (
        f"the owner got {answer.status_code} on {method} {own}, so the ids the factories made "
        f"prove nothing: {answer.text}"
    )
