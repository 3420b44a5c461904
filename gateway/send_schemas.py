"""The JSON shapes of sending: send requests, drafts and templates (they make the OpenAPI document).

Field limits here are only what a schema can say (lengths, counts); every address, header value
and attachment is checked in :mod:`gateway.compose`, which knows the field names to report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "AttachmentIn",
    "DraftList",
    "DraftOut",
    "SendRequest",
    "TemplateIn",
    "TemplateList",
    "TemplateOut",
]


class AttachmentIn(BaseModel):
    filename: str = Field(min_length=1, max_length=255, examples=["agenda.pdf"])
    content_type: str = Field(default="application/octet-stream", max_length=255)
    content: str = Field(description="The file's bytes, base64-encoded.")


class SendRequest(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [
                {
                    "to": ["bob@example.com"],
                    "subject": "Lunch?",
                    "text": "Noon at the usual place?",
                }
            ]
        },
    }

    to: list[str] = Field(default_factory=list, max_length=500)
    cc: list[str] = Field(default_factory=list, max_length=500)
    bcc: list[str] = Field(default_factory=list, max_length=500)
    reply_to: list[str] = Field(default_factory=list, max_length=50)
    subject: str = Field(default="", max_length=998)
    text: str | None = None
    html: str | None = None
    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=50,
        description="Extra headers (X-Campaign: ...); From, To, Date, Message-ID and other "
        "headers postroom writes itself are refused.",
    )
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=100)
    in_reply_to: str | None = Field(
        default=None,
        max_length=998,
        description="The message answered: one of your message ids, or its <Message-ID>. "
        "Sets In-Reply-To and References.",
    )
    send_at: datetime | None = Field(
        default=None,
        description="Send later (with a time zone); until then DELETE /send/{id} cancels it.",
    )
    template_id: str | None = Field(
        default=None, description="Fill subject, text and html from this template."
    )
    variables: dict[str, Any] = Field(
        default_factory=dict, description="Values for the template's declared variables."
    )


class DraftOut(BaseModel):
    id: str
    message_id: str = Field(description="The draft's copy in your Drafts mailbox.")
    draft: SendRequest
    created_at: datetime
    updated_at: datetime


class DraftList(BaseModel):
    items: list[DraftOut]


class TemplateIn(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [
                {
                    "name": "welcome",
                    "subject": "Welcome, {{ name }}",
                    "text": "Hello {{ name }}, your plan is {{ plan }}.",
                    "variables": ["name", "plan"],
                }
            ]
        },
    }

    name: str = Field(min_length=1, max_length=255)
    subject: str = Field(default="", max_length=998)
    text: str | None = None
    html: str | None = None
    variables: list[str] = Field(default_factory=list, max_length=100)


class TemplateOut(TemplateIn):
    model_config = {"extra": "ignore"}

    id: str
    created_at: datetime
    updated_at: datetime


class TemplateList(BaseModel):
    items: list[TemplateOut]
