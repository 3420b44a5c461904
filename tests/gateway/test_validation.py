"""Bad sends: each error names the field and the problem, and nothing is queued or stored."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from storage.db.models import Blob, OutboundMessage
from tests.support.gateway_api import Api, Client, api_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = 64 * 1024


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    directory = Path(tmp_path_factory.mktemp("validation"))
    async with api_for(database_url, directory, max_message_size=LIMIT) as api:
        yield api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ann(api: Api) -> Client:
    return await api.user("ann@valid.test")


async def _stored(api: Api) -> tuple[int, int]:
    async with api.store.db.session() as session:
        sends = await session.scalar(select(func.count()).select_from(OutboundMessage))
        blobs = await session.scalar(select(func.count()).select_from(Blob))
    return int(sends or 0), int(blobs or 0)


GOOD: dict[str, Any] = {"to": ["bob@remote.test"], "subject": "Hi", "text": "Hello"}

CASES: list[tuple[dict[str, Any], int, str, str]] = [
    ({"cc": ["ok@remote.test", "not an address"]}, 422, "cc[1]", "not a valid mail address"),
    ({"bcc": ["a@remote.test\r\nRCPT TO:<x@evil.test>"]}, 422, "bcc[0]", "control character"),
    ({"reply_to": ["@remote.test"]}, 422, "reply_to[0]", "not a valid mail address"),
    ({"to": []}, 422, "to", "at least one recipient"),
    ({"subject": "Hi\r\nBcc: victim@remote.test"}, 422, "subject", "CR, LF"),
    ({"headers": {"X-Tag": "a\nb"}}, 422, "headers.X-Tag", "CR, LF"),
    ({"headers": {"Bcc": "x@remote.test"}}, 422, "headers.Bcc", "set by postroom"),
    ({"headers": {"Bad Name": "v"}}, 422, "headers.Bad Name", "not a header name"),
    ({"text": None}, 422, "text", "text or an html body"),
    ({"unknown": 1}, 422, "unknown", "Extra inputs"),
    ({"to": "bob@remote.test"}, 422, "to", "valid list"),
    ({"send_at": "2030-01-01T09:00:00"}, 422, "send_at", "time zone"),
    (
        {"attachments": [{"filename": "a.bin", "content": "not base64!"}]},
        422,
        "attachments[0].content",
        "base64",
    ),
    (
        {"attachments": [{"filename": "a\r\nb.txt", "content": "aGk="}]},
        422,
        "attachments[0].filename",
        "CR, LF",
    ),
    (
        {"attachments": [{"filename": "a.txt", "content_type": "text", "content": "aGk="}]},
        422,
        "attachments[0].content_type",
        "media type",
    ),
    (
        {
            "attachments": [
                {"filename": "a.eml", "content_type": "multipart/mixed", "content": "aGk="}
            ]
        },
        422,
        "attachments[0].content_type",
        "cannot be attached",
    ),
    (
        {
            "attachments": [
                {"filename": "big.bin", "content": base64.b64encode(b"x" * (LIMIT + 1)).decode()}
            ]
        },
        413,
        "attachments[0]",
        "size limit",
    ),
    ({"text": "y" * (LIMIT + 10)}, 413, "body", "the limit is"),
]


@pytest.mark.parametrize(("change", "status", "field", "problem"), CASES)
async def test_bad_send_names_the_field_and_queues_nothing(
    api: Api, ann: Client, change: dict[str, Any], status: int, field: str, problem: str
) -> None:
    before = await _stored(api)
    answer = await ann.post("/send", json={**GOOD, **change})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["field"] == field
    assert problem in error["message"]
    assert await _stored(api) == before


async def test_a_body_far_over_the_limit_is_refused_before_reading(api: Api, ann: Client) -> None:
    before = await _stored(api)
    answer = await ann.post(
        "/send",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["field"] == "body"
    assert await _stored(api) == before


async def test_malformed_json_and_unknown_local_user(api: Api, ann: Client) -> None:
    before = await _stored(api)
    broken = await ann.post(
        "/send", content=b'{"to": [', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["error"]["field"] == "body"
    nobody = await ann.post("/send", json={**GOOD, "to": ["nobody@valid.test"]})
    assert nobody.status_code == 422
    assert nobody.json()["error"]["field"] == "to[0]"
    assert await _stored(api) == before


async def test_an_unexpected_error_shows_no_stack_trace(api: Api) -> None:
    @api.app.get("/api/v1/test-only/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals at /srv/postroom")

    # Routes match in order and the web UI is mounted at "/" last: put this one before it.
    api.app.router.routes.insert(0, api.app.router.routes.pop())
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://postroom.test") as http:
        answer = await http.get("/api/v1/test-only/boom")
    assert answer.status_code == 500
    assert answer.json() == {
        "error": {
            "code": "internal",
            "message": "something went wrong on our side; it has been logged",
        }
    }
    assert "secret" not in answer.text and "Traceback" not in answer.text
