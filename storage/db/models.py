"""The metadata schema. Alembic migrations under ``storage/migrations`` create exactly this.

Public rows carry time-ordered string ids from :func:`postroom.ids.new_id`. A message row is one
copy in one mailbox; its content (parsed bodies, attachments) lives once per raw blob in
``message_contents``, so mail sent to 500 local users is parsed and stored once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from postroom.ids import new_id
from storage.db.types import UTCDateTime, utcnow

__all__ = [
    "Attachment",
    "AuthToken",
    "Base",
    "Blob",
    "Change",
    "Delivery",
    "DeliveryRecipient",
    "Domain",
    "Draft",
    "IdempotencyKey",
    "InboundMessage",
    "Mailbox",
    "Message",
    "MessageContent",
    "OutboundMessage",
    "QueueJob",
    "SearchDocument",
    "SendSchedule",
    "Suppression",
    "Template",
    "Thread",
    "User",
]

ID = String(32)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


def _id() -> Mapped[str]:
    return mapped_column(ID, primary_key=True, default=new_id)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


class Domain(Base):
    __tablename__ = "domains"
    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(253), unique=True)
    dkim_selector: Mapped[str | None] = mapped_column(String(63), default=None)
    dkim_private_key: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = _created()


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = _id()
    domain_id: Mapped[str] = mapped_column(ForeignKey("domains.id", ondelete="RESTRICT"))
    address: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    change_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = _created()


class Mailbox(Base):
    __tablename__ = "mailboxes"
    __table_args__ = (
        UniqueConstraint("user_id", "name", name="uq_mailboxes_user_name"),
        UniqueConstraint("user_id", "role", name="uq_mailboxes_user_role"),
    )
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = _created()
    # Kept by triggers on messages (migration 0016), so a loaded Mailbox's copy goes stale
    # as soon as its messages change: read them with repositories.mail's count selects, which
    # ask the database; an attribute access raises instead of answering an old count.
    total: Mapped[int] = mapped_column(server_default="0", deferred=True, deferred_raiseload=True)
    unread: Mapped[int] = mapped_column(server_default="0", deferred=True, deferred_raiseload=True)


class Thread(Base):
    __tablename__ = "threads"
    __table_args__ = (Index("ix_threads_user_subject", "user_id", "subject_key"),)
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    subject_key: Mapped[str] = mapped_column(String(255), default="")
    last_message_at: Mapped[datetime] = _created()


class Blob(Base):
    """A blob the blob store holds, addressed by the SHA-256 of its bytes."""

    __tablename__ = "blobs"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()


class MessageContent(Base):
    """What parsing one raw message gave; shared by every copy of that message."""

    __tablename__ = "message_contents"
    blob_key: Mapped[str] = mapped_column(ForeignKey("blobs.key"), primary_key=True)
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    defects: Mapped[list[str]] = mapped_column(default=list)


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("content_key", "position", name="uq_attachments_pos"),)
    id: Mapped[str] = _id()
    content_key: Mapped[str] = mapped_column(
        ForeignKey("message_contents.blob_key", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    blob_key: Mapped[str] = mapped_column(ForeignKey("blobs.key"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    content_id: Mapped[str | None] = mapped_column(String(255), default=None)


class Message(Base):
    """One copy of a message in one mailbox of one user."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_list", "user_id", "mailbox_id", "received_at", "id"),
        Index("ix_messages_user_msgid", "user_id", "message_id_header"),
        Index("ix_messages_counts", "user_id", "mailbox_id", "seen"),
        UniqueConstraint("inbound_id", "user_id", name="uq_messages_inbound_user"),
    )
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    mailbox_id: Mapped[str] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    thread_id: Mapped[str] = mapped_column(ForeignKey("threads.id"), index=True)
    blob_key: Mapped[str] = mapped_column(ForeignKey("message_contents.blob_key"))
    inbound_id: Mapped[str | None] = mapped_column(ID, default=None)
    message_id_header: Mapped[str | None] = mapped_column(String(998), default=None)
    subject: Mapped[str] = mapped_column(Text, default="")
    from_name: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str] = mapped_column(String(320), default="")
    to_addresses: Mapped[list[str]] = mapped_column(default=list)
    cc_addresses: Mapped[list[str]] = mapped_column(default=list)
    bcc_addresses: Mapped[list[str]] = mapped_column(default=list)
    date: Mapped[datetime]
    received_at: Mapped[datetime] = _created()
    size: Mapped[int] = mapped_column(BigInteger)
    snippet: Mapped[str] = mapped_column(Text, default="")
    has_attachments: Mapped[bool] = mapped_column(Boolean, default=False)
    seen: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    answered: Mapped[bool] = mapped_column(Boolean, default=False)


class InboundMessage(Base):
    """A message accepted for local delivery and not yet (or already) processed.

    The row is the system of record for inbound work: the queue only hints at it, and the
    sweeper re-enqueues rows still ``pending``.
    """

    __tablename__ = "inbound_messages"
    __table_args__ = (Index("ix_inbound_status", "status", "received_at"),)
    id: Mapped[str] = _id()
    blob_key: Mapped[str] = mapped_column(ForeignKey("blobs.key"))
    mail_from: Mapped[str] = mapped_column(String(320), default="")
    rcpt_to: Mapped[list[str]] = mapped_column(default=list)
    source: Mapped[str] = mapped_column(String(16))
    delivery_id: Mapped[str | None] = mapped_column(ID, default=None)
    peer: Mapped[str] = mapped_column(String(255), default="")
    helo: Mapped[str] = mapped_column(String(255), default="")
    """The name the client gave in HELO/EHLO; SPF checks it (and uses it for a null sender)."""
    received_at: Mapped[datetime] = _created()
    status: Mapped[str] = mapped_column(String(16), default="pending")
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    """Why the last processing attempt was put off (e.g. the spam checker was down)."""


class OutboundMessage(Base):
    """A message a user sent; its deliveries say what became of each recipient."""

    __tablename__ = "outbound_messages"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    sender: Mapped[str] = mapped_column(String(320))
    blob_key: Mapped[str] = mapped_column(ForeignKey("blobs.key"))
    sent_message_id: Mapped[str | None] = mapped_column(ID, default=None)
    created_at: Mapped[datetime] = _created()


class Delivery(Base):
    """Delivery of one outbound message to one recipient domain (or to local mailboxes)."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),)
    id: Mapped[str] = _id()
    outbound_id: Mapped[str] = mapped_column(
        ForeignKey("outbound_messages.id", ondelete="CASCADE"), index=True
    )
    domain: Mapped[str] = mapped_column(String(253))
    local: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    """queued | deferred | delivered | bounced | partial | held (content check) | cancelled"""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = _created()
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    held_reason: Mapped[str | None] = mapped_column(Text, default=None)
    delay_notified_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class DeliveryRecipient(Base):
    __tablename__ = "delivery_recipients"
    id: Mapped[str] = _id()
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    address: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    remote_reply: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = _created()


class Suppression(Base):
    """An address we will not send to, usually because it hard-bounced."""

    __tablename__ = "suppressions"
    id: Mapped[str] = _id()
    address: Mapped[str] = mapped_column(String(320), unique=True)
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="bounce")
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime | None] = mapped_column(default=None)


class Change(Base):
    """The per-user change log; ``seq`` increases by one with every change of that user."""

    __tablename__ = "changes"
    __table_args__ = (UniqueConstraint("user_id", "seq", name="uq_changes_user_seq"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()


class AuthToken(Base):
    """A bearer token or API key; only the SHA-256 of the secret is kept."""

    __tablename__ = "auth_tokens"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="session")
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class QueueJob(Base):
    """A queue entry of the table queue backend (embedded default)."""

    __tablename__ = "queue_jobs"
    __table_args__ = (Index("ix_queue_jobs_due", "queue", "available_at"),)
    id: Mapped[str] = _id()
    queue: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    available_at: Mapped[datetime] = _created()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    created_at: Mapped[datetime] = _created()


class Draft(Base):
    """A message being written: its request as the API took it, and its copy in Drafts."""

    __tablename__ = "drafts"
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(ID)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Template(Base):
    """A user's Jinja2 message template with the variables it declares."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_templates_user_name"),)
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str | None] = mapped_column(Text, default=None)
    html: Mapped[str | None] = mapped_column(Text, default=None)
    variables: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class IdempotencyKey(Base):
    """The first result of a send made with an ``Idempotency-Key``; unique per user and key."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_user_key"),)
    id: Mapped[str] = _id()
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()


class SendSchedule(Base):
    """When an API send is due, so that it can be cancelled until it goes out."""

    __tablename__ = "send_schedules"
    outbound_id: Mapped[str] = mapped_column(
        ForeignKey("outbound_messages.id", ondelete="CASCADE"), primary_key=True
    )
    send_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)


class SearchDocument(Base):
    """The searchable text of one message content, normalised by ``search.text``.

    One row per content, shared by every copy: flags, mailbox, dates and sizes are read from
    ``messages`` at query time, so flag changes and moves need no reindexing and a deleted copy
    simply stops matching. The engine's own index (an SQLite FTS5 table, a PostgreSQL tsvector
    column) is derived from these columns by the 0006 migration's triggers and generated column;
    on PostgreSQL 0014 adds a trigger-kept headers-only table and a hash index on ``blob_key``.
    """

    __tablename__ = "search_documents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    blob_key: Mapped[str] = mapped_column(
        ForeignKey("message_contents.blob_key", ondelete="CASCADE"), unique=True
    )
    version: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str] = mapped_column(Text, default="")
    sender: Mapped[str] = mapped_column(Text, default="")
    recipients_to: Mapped[str] = mapped_column(Text, default="")
    recipients_cc: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    filenames: Mapped[str] = mapped_column(Text, default="")
    indexed_at: Mapped[datetime] = _created()


# Search joins a content's index row to the user's copies of it.
Index("ix_messages_content_user", Message.blob_key, Message.user_id)
# Search walks one user's mail newest first (migration 0013).
Index(
    "ix_messages_user_received",
    Message.user_id,
    Message.received_at,
    Message.id,
    Message.blob_key,
)
