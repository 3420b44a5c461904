"""Logging for every role: JSON lines in production, readable text in development.

``POSTROOM_LOG_FORMAT=json`` writes one JSON object per line with ``ts`` (UTC, ISO 8601),
``level``, ``logger``, ``role``, ``message``, ``message_id`` (when a mail is being handled),
any ``extra={...}`` fields the call passed, and ``exc`` with the traceback of an exception.
``text`` (the default, what ``postroom up`` prints on a laptop) is the classic one-line format,
with ``[message_id]`` appended when there is one.

The message id is the internal id of the row that carries the mail through the role that logs:

- received mail (MX, submission, local delivery of a sent message): the ``inbound_messages``
  id, which smtp-in puts in its ``250 ... queued as ID`` reply and the processor files;
- outgoing mail: the ``outbound_messages`` id, shared by every delivery attempt of every
  recipient domain.

It travels in a context variable, so every line logged while one mail is handled carries it
without each call passing it along, and concurrent sessions and jobs never see each other's.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "current_message_id",
    "message_context",
    "message_scope",
    "set_message_id",
    "setup_logging",
]

_MESSAGE_ID: ContextVar[str | None] = ContextVar("postroom_message_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


def current_message_id() -> str | None:
    return _MESSAGE_ID.get()


@contextmanager
def message_context(message_id: str | None) -> Iterator[None]:
    """Lines logged inside carry ``message_id``; the previous id is back afterwards."""
    token = _MESSAGE_ID.set(message_id)
    try:
        yield
    finally:
        _MESSAGE_ID.reset(token)


@contextmanager
def message_scope() -> Iterator[None]:
    """A scope in which :func:`set_message_id` may name the mail once it is known (e.g. after
    a queue job's row has been read); whatever it set is undone on leaving, so the next job a
    long-lived consumer task runs starts without an id."""
    with message_context(_MESSAGE_ID.get()):
        yield


def set_message_id(message_id: str | None) -> None:
    """Name the mail being handled, up to the end of the enclosing :func:`message_scope`."""
    _MESSAGE_ID.set(message_id)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; never raises on values JSON cannot hold (they become str)."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "role": self.role,
            "message": record.getMessage(),
        }
        message_id = getattr(record, "message_id", None) or _MESSAGE_ID.get()
        if message_id:
            entry["message_id"] = message_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["exc"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message [message_id]``, for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        message_id = getattr(record, "message_id", None) or _MESSAGE_ID.get()
        if not message_id:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [{message_id}]{newline}{rest}"


def setup_logging(level: str, log_format: Literal["text", "json"], role: str) -> None:
    """Route every logger to stderr in the chosen format; ``role`` names this process's roles."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(role) if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
