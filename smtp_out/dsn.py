"""Delivery status notifications (RFC 3464) in a ``multipart/report`` (RFC 6522).

A DSN has three parts: a text a person reads, a ``message/delivery-status`` part a program
reads (mail clients use it to show which recipient failed and why), and the headers of the
original message so the sender can tell which message it was.

Remote replies are text chosen by another server and the original subject is chosen by
whoever sent the message, so nothing from either reaches a header unchecked: reply text is
flattened to one line of printable ASCII, and the subject must pass
:func:`postroom.addresses.check_header_value`.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Literal

from postroom.addresses import check_header_value
from postroom.errors import InvalidInput
from storage.db.types import utcnow

__all__ = ["Action", "RecipientReport", "build_dsn", "is_delivery_report", "status_code"]

Action = Literal["failed", "delayed"]

_POLICY = SMTP.clone(refold_source="none")
"""Keeps the delivery-status fields as written: the default would turn long words of a
remote reply into RFC 2047 encoded-words, which a delivery-status field must not contain."""

_ENHANCED = re.compile(r"^([245])\d\d[ -]([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_BASIC = re.compile(r"^([245])\d\d(?=[\s-]|$)")
_UNSAFE = re.compile(r"[^\x20-\x7e]+")
_MSGID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]+>$")
MAX_FIELD = 900
"""Characters of a remote reply quoted in a field; lines stay below SMTP's 998."""
MAX_SUBJECT = 120
WIDTH = 72


@dataclass(frozen=True)
class RecipientReport:
    """What to tell about one recipient."""

    address: str
    action: Action
    diagnostic: str
    """The SMTP reply (``550 5.1.1 no such user``), remote or made up in the same form."""
    explanation: str = ""
    """What the text part says, when it is more than the reply (``gave up after 5 days: ...``)."""
    remote_mta: str | None = None


def status_code(diagnostic: str, action: Action) -> str:
    """The RFC 3463 status of a reply: its enhanced code, else one from its class.

    A failure may carry a 4.x.x status: that is a temporary problem that lasted until we gave
    up, which RFC 3463 calls a persistent transient failure.
    """
    if (match := _ENHANCED.match(diagnostic)) and match[1] == match[2]:
        return f"{match[2]}.{match[3]}.{match[4]}"
    if (basic := _BASIC.match(diagnostic)) and basic[1] in "45":
        return f"{basic[1]}.0.0"
    return "5.0.0" if action == "failed" else "4.0.0"


def is_delivery_report(raw: bytes) -> bool:
    """True for a DSN, which must never be answered with another one (RFC 3464 section 2)."""
    headers = BytesHeaderParser(policy=_POLICY).parsebytes(raw)
    return headers.get_content_type() == "multipart/report" and str(
        headers.get_param("report-type", "", header="content-type")
    ).lower() in ("delivery-status", "global-delivery-status")


def build_dsn(
    *,
    hostname: str,
    sender: str,
    original: bytes,
    arrival: datetime,
    recipients: Sequence[RecipientReport],
    retry_until: datetime | None = None,
) -> bytes:
    """The DSN telling ``sender`` what became of ``recipients`` of the ``original`` message."""
    if not recipients:
        raise ValueError("a DSN reports on at least one recipient")
    headers = BytesHeaderParser(policy=_POLICY).parsebytes(original)
    failed = any(r.action == "failed" for r in recipients)
    subject = _original_subject(headers.get("Subject"))
    report = EmailMessage(policy=_POLICY)
    report["From"] = Address("Mail Delivery System", "MAILER-DAEMON", hostname)
    report["To"] = sender
    if failed:
        report["Subject"] = "Undelivered Mail Returned to Sender"
    else:
        report["Subject"] = f"Delivery delayed: {subject}" if subject else "Delivery delayed"
    report["Date"] = format_datetime(utcnow())
    report["Message-ID"] = make_msgid(domain=hostname)
    if (message_id := _message_id(headers.get("Message-ID"))) is not None:
        report["In-Reply-To"] = message_id
        report["References"] = message_id
    report["Auto-Submitted"] = "auto-replied"
    report.set_content(_explanation(hostname, subject, recipients, retry_until))
    report.make_mixed()
    report.set_type("multipart/report")
    report.set_param("report-type", "delivery-status")
    report.attach(_status_part(hostname, arrival, recipients, retry_until))
    report.attach(_headers_part(original))
    return report.as_bytes()


def _original_subject(value: object) -> str:
    if value is None:
        return ""
    # Undecodable bytes come back as surrogates, which no encoder takes: make them "?".
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    subject = " ".join(text.split())[:MAX_SUBJECT]
    try:
        return check_header_value(subject, field="subject")
    except InvalidInput:
        return ""


def _message_id(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if _MSGID.match(text) else None


def _explanation(
    hostname: str,
    subject: str,
    recipients: Sequence[RecipientReport],
    retry_until: datetime | None,
) -> str:
    about = f' "{subject}"' if subject else ""
    lines = [f"This is the mail system at {hostname}.", ""]
    failed = [r for r in recipients if r.action == "failed"]
    delayed = [r for r in recipients if r.action == "delayed"]
    if failed:
        lines += [
            textwrap.fill(
                f"Your message{about} could not be delivered to the recipients below. "
                "Their mail servers refused it, or kept it waiting until we gave up; "
                "sending it again will most likely fail the same way.",
                WIDTH,
            ),
            "",
            *(f"<{r.address}>: {_one_line(r.explanation or r.diagnostic)}" for r in failed),
            "",
        ]
    if delayed:
        until = f" until {format_datetime(retry_until)}" if retry_until else ""
        lines += [
            textwrap.fill(
                f"Your message{about} has not been delivered yet to the recipients below. "
                f"We keep trying{until} and tell you if we give up; "
                "you do not need to send it again.",
                WIDTH,
            ),
            "",
            *(f"<{r.address}>: {_one_line(r.explanation or r.diagnostic)}" for r in delayed),
            "",
        ]
    lines.append("The headers of your message are attached.")
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    """Remote text flattened to one line of printable ASCII words: safe in any field."""
    return " ".join(_UNSAFE.sub(" ", text).split())[:MAX_FIELD]


def _status_part(
    hostname: str,
    arrival: datetime,
    recipients: Sequence[RecipientReport],
    retry_until: datetime | None,
) -> EmailMessage:
    per_message = _fields(
        ("Reporting-MTA", f"dns; {_one_line(hostname)}"),
        ("Arrival-Date", format_datetime(arrival)),
    )
    blocks = [per_message]
    for recipient in recipients:
        fields = [
            ("Final-Recipient", f"rfc822; {recipient.address}"),
            ("Action", recipient.action),
            ("Status", status_code(recipient.diagnostic, recipient.action)),
        ]
        if recipient.remote_mta:
            fields.append(("Remote-MTA", f"dns; {_one_line(recipient.remote_mta)}"))
        fields.append(("Diagnostic-Code", f"smtp; {_one_line(recipient.diagnostic)}"))
        if recipient.action == "delayed" and retry_until is not None:
            fields.append(("Will-Retry-Until", format_datetime(retry_until)))
        blocks.append(_fields(*fields))
    part = EmailMessage(policy=_POLICY)
    part["Content-Type"] = "message/delivery-status"
    part.set_payload(blocks)  # type: ignore[arg-type]  # the email package's list payload
    return part


def _fields(*fields: tuple[str, str]) -> EmailMessage:
    """One block of delivery-status fields, each checked, then kept as written."""
    block = EmailMessage(policy=_POLICY)
    for name, value in fields:
        block.set_raw(name, _fold(len(name) + 2, check_header_value(value)))
    return block


def _fold(used: int, value: str, width: int = 78) -> str:
    """Fold at spaces for readability; a word longer than a line stays whole."""
    words = value.split(" ")
    lines = [words[0]]
    used += len(words[0])
    for word in words[1:]:
        if used + 1 + len(word) > width:
            lines.append(" " + word)
            used = 1 + len(word)
        else:
            lines[-1] += " " + word
            used += 1 + len(word)
    return "\r\n".join(lines)


def _headers_part(original: bytes) -> EmailMessage:
    section, _, _ = original.replace(b"\r\n", b"\n").partition(b"\n\n")
    part = EmailMessage(policy=_POLICY)
    part.set_content(section.decode("utf-8", "replace") + "\n", subtype="rfc822-headers")
    del part["MIME-Version"]  # set_content adds it, but it belongs to the whole message only
    return part
