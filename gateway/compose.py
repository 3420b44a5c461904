"""Turning a send request into a validated RFC 5322 message.

Every address goes through :func:`postroom.addresses.normalize_address` and every header value
through :func:`postroom.addresses.check_header_value` before the ``email`` package sees it,
because Python 3.11's ``email`` does not refuse injected newlines itself. Each error names the
request field (``cc[2]``, ``headers.X-Tag``, ``attachments[0].content``), and nothing is
written anywhere until the whole request has passed.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parsedate_to_datetime

from gateway.errors import PayloadTooLarge
from gateway.plain_mime import plain_bytes
from gateway.send_schemas import SendRequest
from postroom.addresses import check_header_value, normalize_address
from postroom.errors import InvalidHeader, InvalidInput
from postroom.message import (
    MAX_ADDRESS,
    MAX_MSGID,
    MAX_REFERENCES,
    ParsedAttachment,
    ParsedMessage,
)
from storage.db.types import utcnow

__all__ = ["Composed", "Threading", "compose"]

_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
"""RFC 5322 field names: printable ASCII without the colon (and short enough for one line)."""

_WS = re.compile(r"\s+")
_MSGID = re.compile(r"<[^<>\s]+>")
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")

RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From", "Sender", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-ID",
        "In-Reply-To", "References", "MIME-Version", "Content-Type",
        "Content-Transfer-Encoding", "Content-Disposition", "Received", "Return-Path",
        "DKIM-Signature", "Authentication-Results",
    )
)  # fmt: skip
"""Headers postroom writes itself: a request may not set or duplicate them."""


@dataclass
class Threading:
    """What a reply carries: the parent's Message-ID and the References chain to it."""

    in_reply_to: str
    references: list[str] = field(default_factory=list)


@dataclass
class Composed:
    raw: bytes
    to: list[str]
    cc: list[str]
    bcc: list[str]
    parsed: ParsedMessage | None = None
    """What :func:`postroom.message.parse_message` gives for ``raw``, known without parsing
    it (``None`` when the request is unusual enough that only parsing can say)."""

    @property
    def recipients(self) -> list[str]:
        return list(dict.fromkeys(a.lower() for a in (*self.to, *self.cc, *self.bcc)))


def _addresses(values: list[str], field: str) -> list[str]:
    return [normalize_address(v.strip(), field=f"{field}[{i}]") for i, v in enumerate(values)]


def _extra_headers(headers: dict[str, str]) -> list[tuple[str, str]]:
    checked: list[tuple[str, str]] = []
    for name, value in headers.items():
        where = f"headers.{name}"
        if not _HEADER_NAME.match(name):
            raise InvalidHeader(
                f"{name!r} is not a header name (printable ASCII, no colon or space)", field=where
            )
        if name.lower() in RESERVED_HEADERS:
            raise InvalidHeader(f"{name} is set by postroom and cannot be given", field=where)
        checked.append((name, check_header_value(value, field=where)))
    return checked


def _attachments(request: SendRequest, limit: int) -> list[tuple[str, str, str, bytes]]:
    """(filename, maintype, subtype, bytes) of each attachment, refusing what cannot be sent."""
    result: list[tuple[str, str, str, bytes]] = []
    total = 0
    for index, attachment in enumerate(request.attachments):
        where = f"attachments[{index}]"
        filename = check_header_value(attachment.filename, field=f"{where}.filename")
        if not _CONTENT_TYPE.match(attachment.content_type):
            raise InvalidInput(
                f"{attachment.content_type!r} is not a media type like application/pdf",
                field=f"{where}.content_type",
            )
        if attachment.content_type.lower().startswith(("multipart/", "message/")):
            raise InvalidInput(
                f"{attachment.content_type} cannot be attached as bytes; "
                "send it as application/octet-stream",
                field=f"{where}.content_type",
            )
        try:
            data = base64.b64decode(attachment.content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(
                f"the content is not valid base64 ({exc})", field=f"{where}.content"
            ) from exc
        total += len(data)
        if total > limit:
            raise PayloadTooLarge(
                f"the attachments alone exceed the size limit of {limit} bytes", field=where
            )
        maintype, subtype = attachment.content_type.lower().split("/", 1)
        result.append((filename, maintype, subtype, data))
    return result


def compose(
    request: SendRequest,
    *,
    sender: str,
    hostname: str,
    max_size: int,
    threading: Threading | None = None,
    date: datetime | None = None,
    draft: bool = False,
) -> Composed:
    """The message ``request`` describes; a ``draft`` may lack recipients and a body."""
    to = _addresses(request.to, "to")
    cc = _addresses(request.cc, "cc")
    bcc = _addresses(request.bcc, "bcc")
    reply_to = _addresses(request.reply_to, "reply_to")
    if not (to or cc or bcc or draft):
        raise InvalidInput("give at least one recipient in to, cc or bcc", field="to")
    subject = check_header_value(request.subject, field="subject")
    if request.text is None and request.html is None and not draft:
        raise InvalidInput("give a text or an html body (or both)", field="text")
    extra = _extra_headers(request.headers)
    files = _attachments(request, max_size)

    headers = [("From", sender)]
    if to:
        headers.append(("To", ", ".join(to)))
    if cc:
        headers.append(("Cc", ", ".join(cc)))
    if reply_to:
        headers.append(("Reply-To", ", ".join(reply_to)))
    date_text = format_datetime(date or utcnow())
    message_id = make_msgid(domain=hostname)
    headers += [("Subject", subject), ("Date", date_text), ("Message-ID", message_id)]
    if threading is not None:
        references = " ".join([*threading.references, threading.in_reply_to])
        headers += [("In-Reply-To", threading.in_reply_to), ("References", references)]
    headers += extra
    raw = None if files else plain_bytes(headers, request.text, request.html)
    if raw is None:
        raw = email_bytes(headers, request.text, request.html, files)
    if len(raw) > max_size:
        raise PayloadTooLarge(
            f"the message is {len(raw)} bytes; the limit is {max_size}", field="body"
        )
    parsed = None
    if _plain_headers(sender, subject, to, cc, threading):
        parsed = _described(
            sender=sender,
            subject=subject,
            to=to,
            cc=cc,
            date=date_text,
            message_id=message_id,
            threading=threading,
            text=request.text,
            html=request.html,
            files=files,
        )
    return Composed(raw=raw, to=to, cc=cc, bcc=bcc, parsed=parsed)


def email_bytes(
    headers: list[tuple[str, str]],
    text: str | None,
    html: str | None,
    files: list[tuple[str, str, str, bytes]],
) -> bytes:
    """The message as the ``email`` package writes it: any headers, bodies and attachments."""
    message = EmailMessage(policy=SMTP)
    for name, value in headers:
        message[name] = value
    message.set_content(text if text is not None else "")
    if html is not None:
        if text is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    for filename, maintype, subtype, data in files:
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def _plain_headers(
    sender: str, subject: str, to: list[str], cc: list[str], threading: Threading | None
) -> bool:
    """Whether parsing the headers we wrote surely gives back what we wrote (as ``_described``
    assumes): ASCII addresses and ids, and nothing that reads as an RFC 2047 encoded word."""
    ids = [] if threading is None else [threading.in_reply_to, *threading.references]
    return (
        all(value.isascii() for value in (sender, *to, *cc, *ids))
        and "=?" not in subject
        and not any("=?" in value for value in ids)
    )


def _described(
    *,
    sender: str,
    subject: str,
    to: list[str],
    cc: list[str],
    date: str,
    message_id: str,
    threading: Threading | None,
    text: str | None,
    html: str | None,
    files: list[tuple[str, str, str, bytes]],
) -> ParsedMessage:
    """``parse_message(raw)`` for the message :func:`compose` just wrote, from its parts.

    Parsing our own output again cost a send as much as writing it. What the parser would
    change is done here the same way: header text unfolded and whitespace collapsed, bodies
    with one kind of line ending and a final newline (as ``set_content`` writes them), the date
    to the second. ``tests/gateway/test_send_parsed.py`` holds this equal to parsing.
    """
    when = parsedate_to_datetime(date)
    references = _message_ids(
        " ".join([*threading.references, threading.in_reply_to]) if threading else ""
    )
    if len(references) > MAX_REFERENCES:
        references = [references[0], *references[1 - MAX_REFERENCES :]]
    replied = _message_ids(threading.in_reply_to) if threading else []
    ids = _message_ids(message_id)
    return ParsedMessage(
        subject=_one_line(subject),
        from_address=_one_line(sender)[:MAX_ADDRESS],
        to=[_one_line(address) for address in to],
        cc=[_one_line(address) for address in cc],
        date=when if when.tzinfo else when.replace(tzinfo=UTC),
        message_id=ids[0] if ids else None,
        in_reply_to=replied[0] if replied else None,
        references=references,
        # No text but an html body makes an html-only message: no text part to read.
        text="" if text is None and html is not None else _body(text or ""),
        html=_body(html) if html is not None else "",
        attachments=[
            ParsedAttachment(
                filename=_one_line(filename) or f"attachment-{index + 1}",
                content_type=f"{maintype}/{subtype}",
                data=data,
            )
            for index, (filename, maintype, subtype, data) in enumerate(files)
        ],
    )


def _one_line(text: str) -> str:
    """A header value as the parser leaves it (``postroom.message``): one line, trimmed."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _WS.sub(" ", text.replace("\x00", "")).strip()


def _message_ids(value: str) -> list[str]:
    return [i for i in _MSGID.findall(_one_line(value)) if len(i) <= MAX_MSGID]


def _body(text: str) -> str:
    """A body as ``set_content`` writes it and the parser reads it back."""
    lines = text.encode("utf-8").splitlines()
    return (b"\n".join(lines) + b"\n").decode("utf-8").replace("\x00", "")
