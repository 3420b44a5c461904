"""Address autocomplete (``GET /contacts``): people a user corresponded with, theirs only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.gateway_api import Api, Client, api_for, compose

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ann(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("contacts"))) as api:
        yield await _mail(api)


async def _mail(api: Api) -> Client:
    ann = await api.user("ann@contacts.test")
    bob = await api.user("bob@contacts.test")
    for subject in ("one", "two"):
        await api.deliver(
            ann.user, compose(subject, sender="Zed Remote <zed@remote.test>", to=ann.user.address)
        )
    await api.deliver(ann.user, compose("three", sender="Yan <yan@remote.test>", to="x@y.test"))
    sent = compose(
        "to carol", sender=ann.user.address, to="Carol Far <carol@far.test>, dave@far.test"
    )
    await api.deliver(ann.user, sent, mailbox="sent")
    await api.deliver(
        bob.user, compose("private", sender="Secret Agent <secret@hidden.test>", to="b@c.test")
    )
    return ann


async def _contacts(client: Client, **params: str | int) -> list[dict[str, str]]:
    answer = await client.get("/contacts", params=params)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, str]] = answer.json()["items"]
    return items


async def test_senders_and_recipients_most_frequent_first(ann: Client) -> None:
    everyone = await _contacts(ann)
    addresses = [c["address"] for c in everyone]
    assert addresses[0] == "zed@remote.test"  # two messages from Zed
    assert set(addresses) == {
        "zed@remote.test",
        "yan@remote.test",
        "carol@far.test",
        "dave@far.test",
    }
    assert ann.user.address not in addresses  # not yourself
    assert {"name": "Carol Far", "address": "carol@far.test"} in everyone
    assert await _contacts(ann, limit=1) == [{"name": "Zed Remote", "address": "zed@remote.test"}]


async def test_matches_part_of_a_name_or_address_in_any_case(ann: Client) -> None:
    assert [c["address"] for c in await _contacts(ann, q="REMOTE")] == [
        "zed@remote.test",
        "yan@remote.test",
    ]
    assert await _contacts(ann, q="carol far") == [
        {"name": "Carol Far", "address": "carol@far.test"}
    ]
    assert [c["address"] for c in await _contacts(ann, q="dave")] == ["dave@far.test"]
    assert await _contacts(ann, q="%") == []  # a LIKE wildcard is a plain character here
    assert await _contacts(ann, q="_") == []


async def test_another_users_correspondents_never_show(ann: Client) -> None:
    assert await _contacts(ann, q="secret") == []
    assert await _contacts(ann, q="hidden.test") == []


async def test_needs_a_token_and_checks_its_input(ann: Client) -> None:
    anonymous = await ann.http.get("/contacts", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    too_many = await ann.get("/contacts", params={"limit": 500})
    assert too_many.status_code == 422
    assert too_many.json()["error"]["field"] == "limit"
