"""The JSON shapes of the API, as pydantic models (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "AttachmentOut",
    "MailboxList",
    "MailboxOut",
    "MessageDetail",
    "MessageItem",
    "MessageList",
    "Person",
    "RecipientState",
    "SendAccepted",
    "SendRequest",
    "SendStatus",
    "SuppressionList",
    "SuppressionOut",
    "TokenOut",
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


class SendRequest(BaseModel):
    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "to": ["bob@example.com"],
                    "subject": "Lunch?",
                    "text": "Noon at the usual place?",
                }
            ]
        }
    }

    to: list[str] = Field(default_factory=list, max_length=500)
    cc: list[str] = Field(default_factory=list, max_length=500)
    bcc: list[str] = Field(default_factory=list, max_length=500)
    subject: str = Field(default="", max_length=998)
    text: str | None = None
    html: str | None = None


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
