"""Scheduled sends and cancelling: nothing goes out early, and a cancel leaves nothing to send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select, update

from smtp_out.attempt import attempt_delivery
from smtp_out.mx import make_resolver
from smtp_out.worker import DeliveryWorker, build_policy
from storage.db.models import Delivery, InboundMessage
from storage.db.types import utcnow
from storage.repositories.accounts import find_user
from storage.repositories.schedules import release_due
from tests.support.gateway_api import Api, Client, api_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("sched"))) as api:
        yield api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ann(api: Api) -> Client:
    await api.user("bob@sched.test")
    return await api.user("ann@sched.test")


def _later(hours: float = 1) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


async def _deliveries(api: Api, outbound_id: str) -> list[Delivery]:
    async with api.store.db.session() as session:
        rows = await session.scalars(select(Delivery).where(Delivery.outbound_id == outbound_id))
        return list(rows)


async def _inbound(api: Api, outbound_id: str) -> list[str]:
    async with api.store.db.session() as session:
        rows = await session.scalars(
            select(InboundMessage.status)
            .join(Delivery, Delivery.id == InboundMessage.delivery_id)
            .where(Delivery.outbound_id == outbound_id)
        )
        return list(rows)


async def _due_now(api: Api) -> list[str]:
    """What smtp-out's sweeper would enqueue now (a new worker's first sweep sees all)."""
    worker = DeliveryWorker(api.store)
    return [str(job["delivery_id"]) for job in await worker._find_lost(utcnow())]


async def _schedule(ann: Client, hours: float = 1) -> str:
    answer = await ann.post(
        "/send",
        json={
            "to": ["bob@sched.test", "zed@remote.test"],
            "subject": "Later",
            "text": "Tomorrow's news.",
            "send_at": _later(hours),
        },
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def test_a_scheduled_send_waits_until_due(api: Api, ann: Client) -> None:
    outbound_id = await _schedule(ann)
    deliveries = await _deliveries(api, outbound_id)
    assert all(d.next_attempt_at > utcnow() + timedelta(minutes=59) for d in deliveries)
    remote = next(d.id for d in deliveries if not d.local)
    assert remote not in await _due_now(api)  # the sweeper skips it
    policy = build_policy(api.store.settings)
    resolver = await make_resolver(api.store.settings)
    assert await attempt_delivery(api.store, remote, resolver, policy) is None  # a worker too
    [untouched] = [d for d in await _deliveries(api, outbound_id) if d.id == remote]
    assert (untouched.attempts, untouched.next_attempt_at) == (0, deliveries[0].next_attempt_at)
    assert await release_due(api.store) == 0
    assert await _inbound(api, outbound_id) == ["scheduled"]  # no processor takes it

    async with api.store.db.session() as session, session.begin():  # the hour passes
        await session.execute(
            update(Delivery)
            .where(Delivery.outbound_id == outbound_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    assert await release_due(api.store) == 1
    assert await _inbound(api, outbound_id) == ["pending"]
    assert remote in await _due_now(api)


async def test_cancel_before_it_goes_out(api: Api, ann: Client) -> None:
    outbound_id = await _schedule(ann)
    sent_copy = (await ann.get(f"/send/{outbound_id}")).json()["message_id"]
    assert (await ann.get(f"/messages/{sent_copy}")).status_code == 200

    cancelled = await ann.request("DELETE", f"/send/{outbound_id}")
    assert cancelled.status_code == 204
    states = {
        r["address"]: r["state"]
        for r in (await ann.get(f"/send/{outbound_id}")).json()["recipients"]
    }
    assert states == {"bob@sched.test": "cancelled", "zed@remote.test": "cancelled"}
    assert (await ann.get(f"/messages/{sent_copy}")).status_code == 404  # Sent copy removed
    assert await _inbound(api, outbound_id) == ["cancelled"]

    async with api.store.db.session() as session, session.begin():  # even once the time comes
        await session.execute(
            update(Delivery)
            .where(Delivery.outbound_id == outbound_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    due = await _due_now(api)
    assert not any(d.id in due for d in await _deliveries(api, outbound_id))
    assert await release_due(api.store) == 0
    assert (await ann.request("DELETE", f"/send/{outbound_id}")).status_code == 204


async def test_too_late_to_cancel_changes_nothing(api: Api, ann: Client) -> None:
    answer = await ann.post("/send", json={"to": ["zed@remote.test"], "text": "Now."})
    outbound_id = answer.json()["id"]
    async with api.store.db.session() as session, session.begin():  # a worker leases it
        await session.execute(
            update(Delivery)
            .where(Delivery.outbound_id == outbound_id)
            .values(next_attempt_at=utcnow() + timedelta(minutes=20))
        )
    refused = await ann.request("DELETE", f"/send/{outbound_id}")
    assert refused.status_code == 409
    assert "already gone out" in refused.json()["error"]["message"]
    status = (await ann.get(f"/send/{outbound_id}")).json()
    assert [r["state"] for r in status["recipients"]] == ["queued"]
    assert (await ann.get(f"/messages/{status['message_id']}")).status_code == 200


async def test_an_immediate_local_send_can_be_cancelled_before_processing(
    api: Api, ann: Client
) -> None:
    answer = await ann.post("/send", json={"to": ["bob@sched.test"], "text": "Oops."})
    outbound_id = answer.json()["id"]
    assert await _inbound(api, outbound_id) == ["pending"]
    assert (await ann.request("DELETE", f"/send/{outbound_id}")).status_code == 204
    assert await _inbound(api, outbound_id) == ["cancelled"]


async def test_someone_elses_send_is_not_found(api: Api, ann: Client) -> None:
    outbound_id = await _schedule(ann)
    async with api.store.db.session() as session:
        bob_user = await find_user(session, "bob@sched.test")
    assert bob_user is not None
    bob = await api.sign_in(bob_user)
    assert (await bob.request("DELETE", f"/send/{outbound_id}")).status_code == 404
    assert (await bob.request("DELETE", "/send/nosuchsend")).status_code == 404
    assert (await ann.get(f"/send/{outbound_id}")).json()["recipients"][0]["state"] == "queued"
