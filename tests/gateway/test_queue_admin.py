"""Administrators manage the outbound queue over the API; the sender sees the effect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.gateway_api import Api, Client, api_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("queue"))) as api:
        yield api


async def _send(sender: Client, to: str) -> str:
    answer = await sender.post("/send", json={"to": [to], "subject": "hi", "text": "Hello."})
    assert answer.status_code == 202, answer.text
    outbound_id: str = answer.json()["id"]
    return outbound_id


async def _sender_sees(sender: Client, outbound_id: str) -> tuple[str, str | None]:
    [recipient] = (await sender.get(f"/send/{outbound_id}")).json()["recipients"]
    return recipient["state"], recipient["reason"]


async def test_admin_holds_releases_retries_and_deletes(api: Api) -> None:
    root = await api.user("root@queue.test", admin=True)
    ann = await api.user("ann@queue.test")
    outbound_id = await _send(ann, "bob@far.test")

    listed = (await root.get("/admin/queue", params={"domain": "FAR.test"})).json()["items"]
    assert [(e["outbound_id"], e["status"], e["sender"]) for e in listed] == [
        (outbound_id, "queued", "ann@queue.test")
    ]
    delivery = listed[0]["id"]

    held = await root.post(f"/admin/queue/{delivery}/hold", json={"reason": "checking"})
    assert held.status_code == 200, held.text
    assert (held.json()["status"], held.json()["held_reason"]) == ("held", "checking")
    assert await _sender_sees(ann, outbound_id) == ("held", "checking")
    shown = (await root.get(f"/admin/queue/{delivery}")).json()
    assert [r["address"] for r in shown["recipients"]] == ["bob@far.test"]
    again = await root.post(f"/admin/queue/{delivery}/hold")
    assert again.status_code == 409
    assert "is held" in again.json()["error"]["message"]

    released = await root.post(f"/admin/queue/{delivery}/release")
    assert released.json()["status"] == "queued"
    assert await _sender_sees(ann, outbound_id) == ("queued", None)
    assert (await root.post(f"/admin/queue/{delivery}/retry")).status_code == 200

    deleted = await root.request("DELETE", f"/admin/queue/{delivery}")
    assert deleted.status_code == 200
    assert [r["status"] for r in deleted.json()["recipients"]] == ["cancelled"]
    assert await _sender_sees(ann, outbound_id) == ("cancelled", None)
    in_queue = (await root.get("/admin/queue")).json()["items"]
    assert delivery not in [e["id"] for e in in_queue]
    cancelled = (await root.get("/admin/queue", params={"status": "cancelled"})).json()["items"]
    assert delivery in [e["id"] for e in cancelled]
    twice = await root.request("DELETE", f"/admin/queue/{delivery}")
    assert twice.status_code == 409


async def test_queue_admin_refuses_non_admins_and_bad_input(api: Api) -> None:
    root = await api.user("boss@queue2.test", admin=True)
    carl = await api.user("carl@queue2.test")
    outbound_id = await _send(carl, "dora@far2.test")
    [entry] = (await root.get("/admin/queue", params={"domain": "far2.test"})).json()["items"]

    assert (await carl.get("/admin/queue")).status_code == 403
    assert (await carl.post(f"/admin/queue/{entry['id']}/hold")).status_code == 403
    assert (await root.get("/admin/queue/nope")).status_code == 404
    bad_status = await root.get("/admin/queue", params={"status": "lost"})
    assert bad_status.status_code == 422
    assert bad_status.json()["error"]["field"] == "status"
    too_long = await root.post(f"/admin/queue/{entry['id']}/hold", json={"reason": "x" * 501})
    assert too_long.status_code == 422
    assert too_long.json()["error"]["field"] == "reason"
    assert await _sender_sees(carl, outbound_id) == ("queued", None)
