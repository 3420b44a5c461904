"""The gateway app over a migrated storage, driven in process over HTTP (httpx + ASGI).

Shared by the gateway's tests: users made through the repositories, signed in through
``POST /auth/token`` like any client, and mail filed exactly as the processor files it, so
the API reads what real delivery writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import httpx

from gateway.app import create_app
from postroom.message import parse_message
from postroom.settings import Settings
from storage.db.models import Message, User
from storage.registry import Storage
from storage.repositories.accounts import add_domain, add_user, hosted_domain
from storage.repositories.mail import (
    add_copy,
    find_mailbox,
    register_blob,
    save_attachments,
    store_content,
)
from storage.transaction import transaction
from tests.support.stores import migrated_storage

__all__ = ["PASSWORD", "Api", "Client", "api_for", "compose"]

PASSWORD = "correct horse battery"


@dataclass
class Client:
    """One signed-in user: their id, address and an HTTP client carrying their token."""

    user: User
    http: httpx.AsyncClient
    token: str

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, url, **kwargs)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.http.post(url, **kwargs)


def compose(
    subject: str = "hello",
    *,
    sender: str = "zed@remote.test",
    to: str = "ann@example.test",
    text: str = "Hi there.",
    html: str | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="remote.test")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content_type, data in attachments or []:
        maintype, subtype = content_type.split("/", 1)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=SMTP)  # CRLF, as it travels


class Api:
    """The app, its storage, and helpers to make users and file mail."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.app = create_app(store)
        self._clients: list[httpx.AsyncClient] = []

    def anonymous(self) -> httpx.AsyncClient:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://postroom.test/api/v1"
        )
        self._clients.append(http)
        return http

    async def user(self, address: str, *, admin: bool = False) -> Client:
        async with self.store.db.session() as session, session.begin():
            domain = address.rsplit("@", 1)[1]
            if await hosted_domain(session, domain) is None:
                await add_domain(session, domain)
            user = await add_user(session, address, PASSWORD, is_admin=admin)
        return await self.sign_in(user)

    async def sign_in(self, user: User) -> Client:
        http = self.anonymous()
        answer = await http.post(
            "/auth/token", data={"username": user.address, "password": PASSWORD}
        )
        answer.raise_for_status()
        token = answer.json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        return Client(user, http, token)

    async def deliver(self, user: User, raw: bytes, *, mailbox: str = "inbox") -> Message:
        """File ``raw`` into ``user``'s mailbox the way the processor does."""
        parsed = await asyncio.to_thread(parse_message, raw)
        key = await self.store.blobs.put(raw)
        attachment_keys = await save_attachments(self.store.blobs, parsed)
        async with transaction(self.store) as session:
            box = await find_mailbox(session, user.id, mailbox)
            await register_blob(session, key, len(raw))
            await store_content(session, key, parsed, attachment_keys)
            return await add_copy(
                session, user_id=user.id, mailbox=box, raw_key=key, size=len(raw), parsed=parsed
            )

    async def close(self) -> None:
        for http in self._clients:
            await http.aclose()


@asynccontextmanager
async def api_for(database_url: str, data_dir: Path, **settings_: Any) -> AsyncIterator[Api]:
    """An :class:`Api` over a new migrated storage at ``database_url`` (settings overridable)."""
    settings = Settings(data_dir=data_dir, database_url=database_url, **settings_)
    async with migrated_storage(settings) as store:
        api = Api(store)
        try:
            yield api
        finally:
            await api.close()
