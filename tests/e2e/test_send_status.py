"""Send status and the suppression list over the running platform (issue 4, points 7, 10).

Remote deliveries cannot reach a real peer from ``postroom up`` here, so the states only the
delivery worker produces (deferred, bounced, held) are written into the platform's database
as the worker would leave them, with nothing due, and then read back through the API.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select

from storage.db.models import Blob, Delivery, DeliveryRecipient, OutboundMessage, User
from storage.db.types import utcnow
from storage.registry import open_database
from storage.repositories import suppressions
from tests.support.platform import PASSWORD, Platform

pytestmark = pytest.mark.e2e

T = TypeVar("T")
ADMIN = "root@example.test"


def _with_db(platform: Platform, action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(session)`` in one committed transaction on the platform's database."""

    async def run() -> T:
        db = open_database(platform.database_url)
        try:
            async with db.session() as session, session.begin():
                return await action(session)
        finally:
            await db.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def admin(platform: Platform) -> Iterator[str]:
    result = platform.cli("user", "add", ADMIN, "--password", PASSWORD, "--admin")
    assert result.returncode == 0, result.stderr
    yield platform.token(ADMIN)


def _status(api: httpx.Client, outbound_id: str) -> dict[str, Any]:
    response = api.get(f"/send/{outbound_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_local_send_shows_delivered_once_processed(platform: Platform) -> None:
    ann = platform.token("ann@example.test")
    with platform.api(ann) as api:
        sent = api.post(
            "/send", json={"to": ["bob@example.test"], "subject": "status", "text": "hi"}
        ).json()
        deadline = time.monotonic() + 20
        while (status := _status(api, sent["id"]))["recipients"][0]["state"] != "delivered":
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
    assert status["id"] == sent["id"]
    assert status["message_id"] == sent["message_id"]
    [bob] = status["recipients"]
    assert bob["address"] == "bob@example.test"
    assert bob["local"] is True
    assert bob["reply"] == "stored in the local mailbox"
    assert (bob["last_error"], bob["next_attempt_at"], bob["reason"]) == (None, None, None)


def test_another_users_send_is_404(platform: Platform) -> None:
    ann = platform.token("ann@example.test")
    bob = platform.token("bob@example.test")
    with platform.api(ann) as api:
        sent = api.post("/send", json={"to": ["bob@example.test"], "text": "mine"}).json()
        assert api.get(f"/send/{sent['id']}").status_code == 200
    with platform.api(bob) as api:
        for outbound_id in (sent["id"], "no-such-send"):
            response = api.get(f"/send/{outbound_id}")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"


def test_each_remote_recipient_shows_its_state(platform: Platform) -> None:
    later = utcnow() + timedelta(hours=1)

    async def remote_send(session: Any) -> str:
        ann = await session.scalar(select(User).where(User.address == "ann@example.test"))
        key = uuid.uuid4().hex
        session.add(Blob(key=key, size=1))
        outbound = OutboundMessage(user_id=ann.id, sender=ann.address, blob_key=key)
        session.add(outbound)
        await session.flush()
        waiting = Delivery(
            outbound_id=outbound.id, domain="remote.test", status="partial", attempts=2
        )
        waiting.next_attempt_at, waiting.last_error = later, "451 4.7.1 greylisted"
        held = Delivery(
            outbound_id=outbound.id,
            domain="held.test",
            status="held",
            held_reason="spam score 9.1 is over 5.0",
            next_attempt_at=later,
        )
        session.add_all([waiting, held])
        await session.flush()
        session.add_all(
            [
                DeliveryRecipient(delivery_id=waiting.id, address="a@remote.test"),
                DeliveryRecipient(
                    delivery_id=waiting.id,
                    address="b@remote.test",
                    status="deferred",
                    remote_reply="451 4.7.1 greylisted",
                ),
                DeliveryRecipient(
                    delivery_id=waiting.id,
                    address="c@remote.test",
                    status="bounced",
                    remote_reply="550 5.1.1 no such user",
                ),
                DeliveryRecipient(
                    delivery_id=waiting.id,
                    address="d@remote.test",
                    status="delivered",
                    remote_reply="250 2.0.0 Ok: queued as 42",
                ),
                DeliveryRecipient(delivery_id=held.id, address="e@held.test"),
            ]
        )
        return str(outbound.id)

    outbound_id = _with_db(platform, remote_send)
    with platform.api(platform.token("ann@example.test")) as api:
        status = _status(api, outbound_id)
    states = {r["address"]: r for r in status["recipients"]}
    assert {a: r["state"] for a, r in states.items()} == {
        "a@remote.test": "queued",
        "b@remote.test": "deferred",
        "c@remote.test": "bounced",
        "d@remote.test": "delivered",
        "e@held.test": "held",
    }
    assert states["a@remote.test"]["next_attempt_at"] is not None
    assert states["b@remote.test"]["last_error"] == "451 4.7.1 greylisted"
    assert states["b@remote.test"]["next_attempt_at"].startswith(later.strftime("%Y-%m-%dT%H"))
    assert states["b@remote.test"]["attempts"] == 2
    assert states["c@remote.test"]["reason"] == "550 5.1.1 no such user"
    assert states["d@remote.test"]["reply"] == "250 2.0.0 Ok: queued as 42"
    assert states["e@held.test"]["reason"] == "spam score 9.1 is over 5.0"
    assert all(r["local"] is False for r in states.values())


def test_the_suppression_api_is_for_admins_only(platform: Platform) -> None:
    with platform.api(platform.token("ann@example.test")) as api:
        for response in (api.get("/suppressions"), api.delete("/suppressions/x@remote.test")):
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "forbidden"
    with platform.api() as anonymous:
        assert anonymous.get("/suppressions").status_code == 401


def test_admins_list_and_remove_suppressions_and_sends_are_refused(
    platform: Platform, admin: str
) -> None:
    address = f"gone-{uuid.uuid4().hex[:6]}@remote.test"
    _with_db(
        platform,
        lambda session: suppressions.suppress(session, address, "550 5.1.1 no such user", 30),
    )
    ann = platform.token("ann@example.test")
    with platform.api(ann) as api:
        refused = api.post("/send", json={"to": ["bob@example.test", address], "text": "x"})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "to[1]"
    assert f"{address} is on the suppression list" in refused.json()["error"]["message"]

    with platform.api(admin) as api:
        listed = {e["address"]: e for e in api.get("/suppressions").json()["items"]}
        assert listed[address]["reason"] == "550 5.1.1 no such user"
        assert listed[address]["source"] == "bounce"
        assert listed[address]["created_at"] < listed[address]["expires_at"]
        removed = api.delete(f"/suppressions/{address}")
        assert removed.status_code == 204
        assert removed.content == b""
        assert address not in {e["address"] for e in api.get("/suppressions").json()["items"]}
        again = api.delete(f"/suppressions/{address}")
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "not_found"
        assert address in again.json()["error"]["message"]

    with platform.api(ann) as api:
        assert api.post("/send", json={"to": [address], "text": "x"}).status_code == 202


def test_the_suppression_cli(platform: Platform) -> None:
    address = f"cli-{uuid.uuid4().hex[:6]}@remote.test"
    _with_db(
        platform,
        lambda session: suppressions.suppress(session, address, "550 5.1.1 no such user", 30),
    )

    listed = platform.cli("suppression", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(address)]
    assert line.endswith("\t550 5.1.1 no such user")
    assert "\tbounce " in line

    removed = platform.cli("suppression", "remove", address.upper())
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.strip() == f"{address.upper()} removed from the suppression list"
    assert address not in platform.cli("suppression", "list").stdout

    absent = platform.cli("suppression", "remove", address)
    assert absent.returncode == 2
    assert absent.stdout == ""
    assert absent.stderr.count("\n") == 1
    assert f"{address} is not on the suppression list" in absent.stderr
