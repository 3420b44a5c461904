"""Idempotency-Key: a repeat returns the first result and sends nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select, update

from storage.db.models import IdempotencyKey, OutboundMessage
from storage.db.types import utcnow
from tests.support.gateway_api import Api, Client, api_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESSAGE = {"to": ["bob@remote.test"], "subject": "Invoice 42", "text": "Attached."}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("idem"))) as api:
        yield api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ann(api: Api) -> Client:
    return await api.user("ann@idem.test")


async def _sends(api: Api, client: Client) -> int:
    async with api.store.db.session() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(OutboundMessage)
            .where(OutboundMessage.user_id == client.user.id)
        )
    return int(count or 0)


async def test_a_repeat_returns_the_first_result(api: Api, ann: Client) -> None:
    before = await _sends(api, ann)
    first = await ann.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-repeat"})
    again = await ann.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-repeat"})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await _sends(api, ann) == before + 1


async def test_the_same_key_for_another_request_is_a_conflict(api: Api, ann: Client) -> None:
    first = await ann.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-other"})
    assert first.status_code == 202
    before = await _sends(api, ann)
    other = await ann.post(
        "/send", json={**MESSAGE, "text": "Changed."}, headers={"Idempotency-Key": "k-other"}
    )
    assert other.status_code == 409
    assert "different request" in other.json()["error"]["message"]
    assert await _sends(api, ann) == before


async def test_two_identical_requests_at_once_send_once(api: Api, ann: Client) -> None:
    before = await _sends(api, ann)
    answers = await asyncio.gather(
        *(ann.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-race"}) for _ in range(2))
    )
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    assert await _sends(api, ann) == before + 1


async def test_a_key_older_than_a_day_sends_again(api: Api, ann: Client) -> None:
    first = await ann.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-old"})
    async with api.store.db.session() as session, session.begin():
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == "k-old")
            .values(created_at=utcnow() - timedelta(hours=25))
        )
    later = await ann.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-old"})
    assert later.status_code == 202
    assert later.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in later.headers


async def test_keys_are_per_user(api: Api, ann: Client) -> None:
    bob = await api.user("bob@idem.test")
    mine = await ann.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-shared"})
    theirs = await bob.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-shared"})
    assert theirs.status_code == 202
    assert theirs.json()["id"] != mine.json()["id"]


async def test_a_bad_key_or_a_bad_request_records_nothing(api: Api, ann: Client) -> None:
    bad_key = await ann.post("/send", json=MESSAGE, headers={"Idempotency-Key": "a b"})
    assert bad_key.status_code == 422
    assert bad_key.json()["error"]["field"] == "Idempotency-Key"
    bad = await ann.post(
        "/send", json={**MESSAGE, "to": ["nope"]}, headers={"Idempotency-Key": "k-bad"}
    )
    assert bad.status_code == 422
    good = await ann.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-bad"})
    assert good.status_code == 202
    assert "Idempotent-Replayed" not in good.headers
