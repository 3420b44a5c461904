"""POST /send: JSON and multipart, replies threaded, 202 only once the message is durable."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.message import Message as EmailMessage
from email.policy import default
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from storage.db.models import Delivery, InboundMessage, OutboundMessage
from storage.repositories.accounts import find_user
from tests.support.gateway_api import Api, Client, api_for, compose

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("send"))) as api:
        yield api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ann(api: Api) -> Client:
    await api.user("bob@send.test")
    return await api.user("ann@send.test")


async def sent_copy(client: Client, message_id: str) -> EmailMessage:
    raw = await client.get(f"/messages/{message_id}/raw")
    assert raw.status_code == 200, raw.text
    return message_from_bytes(raw.content, policy=default)


async def test_json_send_with_every_field(api: Api, ann: Client) -> None:
    answer = await ann.post(
        "/send",
        json={
            "to": ["bob@send.test"],
            "cc": ["carol@remote.test"],
            "bcc": ["dave@remote.test"],
            "reply_to": ["replies@send.test"],
            "subject": "Quarterly numbers",
            "text": "See attached.",
            "html": "<p>See <b>attached</b>.</p>",
            "headers": {"X-Campaign": "q3"},
            "attachments": [
                {
                    "filename": "numbers.csv",
                    "content_type": "text/csv",
                    "content": base64.b64encode(b"a,b\n1,2\n").decode(),
                }
            ],
        },
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "queued"

    async with api.store.db.session() as session:
        outbound = await session.get_one(OutboundMessage, body["id"])
        domains = sorted(
            (d.domain, d.local)
            for d in await session.scalars(
                select(Delivery).where(Delivery.outbound_id == outbound.id)
            )
        )
    assert domains == [("remote.test", False), ("send.test", True)]
    assert await api.store.blobs.get(outbound.blob_key)  # durable before the 202

    message = await sent_copy(ann, body["message_id"])
    assert message["To"] == "bob@send.test"
    assert message["Cc"] == "carol@remote.test"
    assert message["Bcc"] is None  # bcc recipients get it, but nobody sees them
    assert message["Reply-To"] == "replies@send.test"
    assert message["X-Campaign"] == "q3"
    parts = {part.get_content_type(): part for part in message.walk()}
    assert parts["text/csv"].get_filename() == "numbers.csv"
    assert parts["text/csv"].get_content() == "a,b\n1,2\n"
    assert "<b>attached</b>" in parts["text/html"].get_content()

    status = (await ann.get(f"/send/{body['id']}")).json()
    assert sorted(r["address"] for r in status["recipients"]) == [
        "bob@send.test",
        "carol@remote.test",
        "dave@remote.test",
    ]


async def test_multipart_send_with_files(ann: Client) -> None:
    answer = await ann.post(
        "/send",
        data={"to": ["x@remote.test", "y@remote.test"], "subject": "Photos", "text": "Two."},
        files=[
            ("attachments", ("one.png", b"\x89PNG one", "image/png")),
            ("attachments", ("two.txt", b"second file", "text/plain")),
        ],
    )
    assert answer.status_code == 202, answer.text
    message = await sent_copy(ann, answer.json()["message_id"])
    assert message["To"] == "x@remote.test, y@remote.test"
    files = {p.get_filename(): p.get_content() for p in message.walk() if p.get_filename()}
    assert files == {"one.png": b"\x89PNG one", "two.txt": "second file"}


async def test_reply_to_own_message_carries_its_references(api: Api, ann: Client) -> None:
    ann = ann
    parent = await api.deliver(
        ann.user, compose("Plans", to="ann@send.test", in_reply_to="<root@remote.test>")
    )
    assert parent.message_id_header is not None
    answer = await ann.post(
        "/send",
        json={
            "to": ["zed@remote.test"],
            "subject": "Re: Plans",
            "text": "Yes.",
            "in_reply_to": parent.id,
        },
    )
    assert answer.status_code == 202, answer.text
    reply = await sent_copy(ann, answer.json()["message_id"])
    assert reply["In-Reply-To"] == parent.message_id_header
    assert reply["References"].split() == ["<root@remote.test>", parent.message_id_header]


async def test_reply_by_message_id_header_we_do_not_hold(ann: Client) -> None:
    ann = ann
    answer = await ann.post(
        "/send",
        json={
            "to": ["zed@remote.test"],
            "text": "Replying.",
            "in_reply_to": "<elsewhere@remote.test>",
        },
    )
    assert answer.status_code == 202, answer.text
    reply = await sent_copy(ann, answer.json()["message_id"])
    assert reply["In-Reply-To"] == "<elsewhere@remote.test>"
    assert reply["References"] == "<elsewhere@remote.test>"


async def test_reply_to_someone_elses_message_is_refused(api: Api, ann: Client) -> None:
    async with api.store.db.session() as session:
        bob = await find_user(session, "bob@send.test")
    assert bob is not None
    theirs = await api.deliver(bob, compose("Private", to="bob@send.test"))
    answer = await ann.post(
        "/send", json={"to": ["zed@remote.test"], "text": "x", "in_reply_to": theirs.id}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "in_reply_to"


async def test_local_recipients_get_an_inbound_row(api: Api, ann: Client) -> None:
    answer = await ann.post("/send", json={"to": ["bob@send.test"], "text": "hi"})
    assert answer.status_code == 202
    async with api.store.db.session() as session:
        rows = list(
            await session.scalars(
                select(InboundMessage)
                .join(Delivery, Delivery.id == InboundMessage.delivery_id)
                .where(Delivery.outbound_id == answer.json()["id"])
            )
        )
    assert [(r.rcpt_to, r.status) for r in rows] == [(["bob@send.test"], "pending")]
