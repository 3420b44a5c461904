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
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from gateway.errors import PayloadTooLarge
from gateway.send_schemas import SendRequest
from postroom.addresses import check_header_value, normalize_address
from postroom.errors import InvalidHeader, InvalidInput
from storage.db.types import utcnow

__all__ = ["Composed", "Threading", "compose"]

_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
"""RFC 5322 field names: printable ASCII without the colon (and short enough for one line)."""

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

    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if reply_to:
        message["Reply-To"] = ", ".join(reply_to)
    message["Subject"] = subject
    message["Date"] = format_datetime(date or utcnow())
    message["Message-ID"] = make_msgid(domain=hostname)
    if threading is not None:
        message["In-Reply-To"] = threading.in_reply_to
        message["References"] = " ".join([*threading.references, threading.in_reply_to])
    for name, value in extra:
        message[name] = value
    message.set_content(request.text if request.text is not None else "")
    if request.html is not None:
        if request.text is None:
            message.set_content(request.html, subtype="html")
        else:
            message.add_alternative(request.html, subtype="html")
    for filename, maintype, subtype, data in files:
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    raw = message.as_bytes()
    if len(raw) > max_size:
        raise PayloadTooLarge(
            f"the message is {len(raw)} bytes; the limit is {max_size}", field="body"
        )
    return Composed(raw=raw, to=to, cc=cc, bcc=bcc)
