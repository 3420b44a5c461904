"""Turning a send request into a validated RFC 5322 message.

Every address goes through :func:`postroom.addresses.normalize_address` and every header value
through :func:`postroom.addresses.check_header_value` before the ``email`` package sees it,
because Python 3.11's ``email`` does not refuse injected newlines itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from gateway.schemas import SendRequest
from postroom.addresses import check_header_value, normalize_address
from postroom.errors import InvalidInput
from storage.db.types import utcnow

__all__ = ["Composed", "compose"]


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


def compose(request: SendRequest, *, sender: str, hostname: str) -> Composed:
    to = _addresses(request.to, "to")
    cc = _addresses(request.cc, "cc")
    bcc = _addresses(request.bcc, "bcc")
    if not (to or cc or bcc):
        raise InvalidInput("give at least one recipient in to, cc or bcc", field="to")
    subject = check_header_value(request.subject, field="subject")
    if request.text is None and request.html is None:
        raise InvalidInput("give a text or an html body (or both)", field="text")

    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=hostname)
    message.set_content(request.text if request.text is not None else "")
    if request.html is not None:
        if request.text is None:
            message.set_content(request.html, subtype="html")
        else:
            message.add_alternative(request.html, subtype="html")
    return Composed(raw=message.as_bytes(), to=to, cc=cc, bcc=bcc)
