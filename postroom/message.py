"""Parsing stored mail into what the database keeps about it.

The processor parses every message it receives, and the gateway parses every message it
composes, with this one function, so a Sent copy is described exactly as its recipients see
it. Parsing never raises: broken mail still gets stored, with what could be read and the
defects noted.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

import nh3

__all__ = ["MAX_PARTS", "ParsedAttachment", "ParsedMessage", "parse_message", "snippet_of"]

MAX_PARTS = 1000
SNIPPET_LENGTH = 200
_WS = re.compile(r"\s+")
_REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|sv|vs)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None


@dataclass
class ParsedMessage:
    subject: str = ""
    from_name: str = ""
    from_address: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    date: datetime | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    text: str = ""
    html: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    @property
    def snippet(self) -> str:
        return snippet_of(self.text or _html_to_text(self.html))

    @property
    def thread_subject(self) -> str:
        """The subject without Re:/Fwd: prefixes, lowercased: the threading fallback key."""
        return _WS.sub(" ", _REPLY_PREFIX.sub("", self.subject)).strip().lower()

    @property
    def is_reply(self) -> bool:
        return bool(_REPLY_PREFIX.match(self.subject))


def snippet_of(text: str) -> str:
    return _WS.sub(" ", text).strip()[:SNIPPET_LENGTH]


def _html_to_text(markup: str) -> str:
    return html.unescape(nh3.clean(markup, tags=set())) if markup else ""


def _header(msg: Message, name: str, parsed: ParsedMessage) -> str:
    try:
        value = msg.get(name)
    except Exception as exc:  # malformed headers raise from the policy's parsers
        parsed.defects.append(f"{name}: {exc}")
        return ""
    return _WS.sub(" ", str(value)).replace("\x00", "").strip() if value is not None else ""


def _addresses(msg: Message, name: str, parsed: ParsedMessage) -> list[tuple[str, str]]:
    try:
        values = [str(v) for v in msg.get_all(name, [])]
    except Exception as exc:
        parsed.defects.append(f"{name}: {exc}")
        return []
    return [(n, a) for n, a in getaddresses(values) if a]


def _format(pair: tuple[str, str]) -> str:
    name, address = pair
    return f"{name} <{address}>" if name else address


def _msgids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value)


def parse_message(raw: bytes) -> ParsedMessage:
    parsed = ParsedMessage()
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:
        parsed.defects.append(f"unparseable: {exc}")
        return parsed

    parsed.subject = _header(msg, "Subject", parsed)
    senders = _addresses(msg, "From", parsed)
    if senders:
        parsed.from_name, parsed.from_address = senders[0]
    parsed.to = [_format(p) for p in _addresses(msg, "To", parsed)]
    parsed.cc = [_format(p) for p in _addresses(msg, "Cc", parsed)]
    date_text = _header(msg, "Date", parsed)
    if date_text:
        try:
            date = parsedate_to_datetime(date_text)
            parsed.date = date if date.tzinfo else date.replace(tzinfo=UTC)
        except (TypeError, ValueError, IndexError):
            parsed.defects.append(f"Date: cannot read {date_text!r}")
    ids = _msgids(_header(msg, "Message-ID", parsed))
    parsed.message_id = ids[0] if ids else None
    replies = _msgids(_header(msg, "In-Reply-To", parsed))
    parsed.in_reply_to = replies[0] if replies else None
    parsed.references = _msgids(_header(msg, "References", parsed))

    if isinstance(msg, EmailMessage):
        _read_parts(msg, parsed)
    return parsed


def _read_parts(msg: EmailMessage, parsed: ParsedMessage) -> None:
    try:
        parts = 0
        for _part in msg.walk():
            parts += 1
            if parts > MAX_PARTS:
                parsed.defects.append(f"more than {MAX_PARTS} MIME parts; the rest is unread")
                break
        for kind in ("plain", "html"):
            body = msg.get_body(preferencelist=(kind,))
            if isinstance(body, EmailMessage) and body.get_content_type() == f"text/{kind}":
                content = _text_content(body, parsed)
                if kind == "plain":
                    parsed.text = content
                else:
                    parsed.html = content
        for index, part in enumerate(msg.iter_attachments()):
            if index >= MAX_PARTS:
                break
            if not isinstance(part, EmailMessage):
                continue
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else part.as_bytes()
            parsed.attachments.append(
                ParsedAttachment(
                    filename=part.get_filename() or f"attachment-{index + 1}",
                    content_type=part.get_content_type(),
                    data=data,
                    content_id=(part.get("Content-ID") or None) and str(part.get("Content-ID")),
                )
            )
    except Exception as exc:  # a broken MIME tree still leaves the raw message readable
        parsed.defects.append(f"MIME structure: {exc}")


def _text_content(part: EmailMessage, parsed: ParsedMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError) as exc:
        parsed.defects.append(f"body: {exc}")
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    # PostgreSQL text cannot hold NUL, and readers want one kind of line ending.
    return content.replace("\x00", "").replace("\r\n", "\n") if isinstance(content, str) else ""
