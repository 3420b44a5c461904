"""The JSON shapes of the API, as pydantic models (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyList",
    "ApiKeyOut",
    "AttachmentOut",
    "BulkRequest",
    "BulkResult",
    "ChangeList",
    "ChangeOut",
    "DeleteResult",
    "DomainCreate",
    "DomainList",
    "DomainOut",
    "FlagsUpdate",
    "MailboxCreate",
    "MailboxList",
    "MailboxOut",
    "MailboxRename",
    "MessageDetail",
    "MessageItem",
    "MessageList",
    "MoveRequest",
    "Person",
    "RecipientState",
    "SendAccepted",
    "SendStatus",
    "SuppressionList",
    "SuppressionOut",
    "ThreadOut",
    "TokenOut",
    "UserCreate",
    "UserList",
    "UserOut",
]


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class MailboxOut(BaseModel):
    id: str
    name: str
    role: str | None
    total: int
    unread: int


class MailboxList(BaseModel):
    items: list[MailboxOut]


class Person(BaseModel):
    name: str
    address: str


class MessageItem(BaseModel):
    id: str
    mailbox_id: str
    thread: str
    subject: str
    from_: Person = Field(serialization_alias="from")
    to: list[str]
    cc: list[str]
    date: datetime
    received_at: datetime
    snippet: str
    size: int
    seen: bool
    flagged: bool
    answered: bool
    has_attachments: bool


class MessageList(BaseModel):
    items: list[MessageItem]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next (older) page; null on the last page."
    )


class AttachmentOut(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int


class MessageDetail(MessageItem):
    bcc: list[str]
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    text: str
    html: str = Field(description="Sanitised HTML; remote images blocked unless ?images=1.")
    attachments: list[AttachmentOut]


class SendAccepted(BaseModel):
    id: str = Field(description="The outbound message id.")
    message_id: str = Field(description="The id of the copy in your Sent mailbox.")
    status: str = "queued"


class RecipientState(BaseModel):
    address: str
    state: Literal["queued", "deferred", "delivered", "bounced", "held", "cancelled"]
    local: bool = Field(description="Delivered into a mailbox here, not over SMTP.")
    attempts: int = Field(description="SMTP attempts so far for this recipient's domain.")
    updated_at: datetime
    reply: str | None = Field(default=None, description="delivered: what the server answered.")
    last_error: str | None = Field(default=None, description="deferred: why it is waiting.")
    next_attempt_at: datetime | None = Field(
        default=None, description="queued or deferred (remote): when it is tried next."
    )
    reason: str | None = Field(
        default=None, description="bounced: the refusal or why we gave up; held: why."
    )


class SendStatus(BaseModel):
    id: str = Field(description="The outbound message id, as POST /send returned it.")
    message_id: str | None = Field(description="The id of the copy in your Sent mailbox.")
    created_at: datetime
    recipients: list[RecipientState]


class SuppressionOut(BaseModel):
    address: str
    reason: str
    source: str = Field(description="What put it here: 'bounce' for a hard bounce.")
    created_at: datetime
    expires_at: datetime | None = Field(description="null: until removed.")


class SuppressionList(BaseModel):
    items: list[SuppressionOut]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    """Request examples for the OpenAPI document (and the contract test's first tries)."""
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class MailboxCreate(BaseModel):
    model_config = _examples({"name": "Receipts"})

    name: str = Field(min_length=1, max_length=255, description="Unique per user, any case.")


class MailboxRename(MailboxCreate):
    model_config = _examples({"name": "Receipts 2026"})


class FlagsUpdate(BaseModel):
    """Flags to set; a flag left out is left as it is."""

    model_config = _examples({"seen": True}, {"flagged": True, "answered": False})

    seen: bool | None = None
    flagged: bool | None = None
    answered: bool | None = None


class MoveRequest(BaseModel):
    model_config = _examples({"mailbox": "archive"})

    mailbox: str = Field(
        min_length=1, max_length=255, description="The target: a role, a mailbox id or name."
    )


class DeleteResult(BaseModel):
    id: str
    outcome: Literal["trashed", "deleted"] = Field(
        description="trashed: moved to Trash; deleted: it was in Trash and is gone for good."
    )


class BulkRequest(BaseModel):
    """One action on many messages. All of them must be yours, or nothing changes (404)."""

    model_config = _examples(
        {"ids": ["0192f7a0c3e1..."], "action": "flags", "seen": True},
        {"ids": ["0192f7a0c3e1..."], "action": "move", "mailbox": "archive"},
        {"ids": ["0192f7a0c3e1..."], "action": "delete"},
    )

    ids: list[str] = Field(min_length=1, max_length=1000)
    action: Literal["flags", "move", "delete"]
    seen: bool | None = Field(default=None, description="flags: set or clear \\Seen.")
    flagged: bool | None = Field(default=None, description="flags: set or clear \\Flagged.")
    answered: bool | None = Field(default=None, description="flags: set or clear \\Answered.")
    mailbox: str | None = Field(
        default=None, max_length=255, description="move: the target role, id or name."
    )


class BulkResult(BaseModel):
    action: Literal["flags", "move", "delete"]
    ids: list[str] = Field(description="Every message acted on, duplicates dropped.")
    trashed: list[str] = Field(default_factory=list, description="delete: moved to Trash.")
    deleted: list[str] = Field(default_factory=list, description="delete: gone for good.")


class ThreadOut(BaseModel):
    id: str
    subject: str
    messages: list[MessageItem] = Field(description="Oldest first, across all your mailboxes.")


class ApiKeyCreate(BaseModel):
    model_config = _examples({"name": "backup script"})

    name: str = Field(min_length=1, max_length=255)


class ApiKeyOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(
        description="The secret, shown this once: send it as 'Authorization: Bearer <key>'."
    )


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


class DomainCreate(BaseModel):
    model_config = _examples({"name": "example.com"})

    name: str = Field(min_length=1, max_length=253)


class DomainOut(BaseModel):
    id: str
    name: str
    users: int
    created_at: datetime
    dkim_record: str | None = Field(
        default=None, description="The DNS TXT record to publish so receivers verify DKIM."
    )


class DomainList(BaseModel):
    items: list[DomainOut]


class UserCreate(BaseModel):
    model_config = _examples(
        {"address": "ann@example.com", "password": "a long password", "is_admin": False}
    )

    address: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    is_admin: bool = False


class UserOut(BaseModel):
    id: str
    address: str
    is_admin: bool
    created_at: datetime


class UserList(BaseModel):
    items: list[UserOut]


class ChangeOut(BaseModel):
    seq: int
    type: str = Field(
        description="mail.new, mail.updated, mail.deleted or mailbox.counts; payloads as in "
        "storage/repositories/changes.py."
    )
    data: dict[str, Any]


class ChangeList(BaseModel):
    model_config = _examples(
        {
            "items": [
                {
                    "seq": 42,
                    "type": "mailbox.counts",
                    "data": {
                        "mailbox": {
                            "id": "0192f7a0c3e1...",
                            "name": "Inbox",
                            "role": "inbox",
                            "total": 12,
                            "unread": 3,
                        }
                    },
                }
            ],
            "latest": 42,
            "more": False,
        }
    )

    items: list[ChangeOut] = Field(description="Oldest first.")
    latest: int = Field(
        description="Pass as ?since= next time: the seq of the last change returned, or the "
        "latest seq when nothing changed."
    )
    more: bool = Field(description="True when the page was full: ask again at once.")
