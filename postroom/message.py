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
from email.feedparser import FeedParser
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.policy import Policy
from email.utils import getaddresses, parsedate_to_datetime

import nh3

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_DEPTH",
    "MAX_PARTS",
    "ParsedAttachment",
    "ParsedMessage",
    "parse_headers",
    "parse_message",
    "snippet_of",
]

MAX_PARTS = 1000
MAX_DEPTH = 50
MAX_ATTACHMENTS = 100
"""Each is a blob write and two rows; a bomb of 1000 tiny files would hold a processor."""
"""Real mail nests a few levels (a forward of a signed alternative: about 6)."""
FEED_CHUNK = 4096
"""How often (in characters) the caps are checked while parsing."""
DEFECT_LENGTH = 500
HEADERS_ONLY_BYTES = 256 * 1024
MAX_ADDRESS = 320
MAX_MSGID = 998
MAX_REFERENCES = 100
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
    """The first :data:`SNIPPET_LENGTH` characters of ``text`` with each run of whitespace made
    one space, read from as little of ``text`` as gives them: every message filed is
    snippeted, and collapsing the whitespace of a whole body (up to the size limit) to keep
    200 characters of it was a few percent of the gateway's time on each send."""
    end = SNIPPET_LENGTH * 2
    while end < len(text):
        head = _WS.sub(" ", text[:end]).lstrip()
        if len(head) > SNIPPET_LENGTH:
            # the whole text's snippet starts with ``head``, which is longer than it keeps
            return head[:SNIPPET_LENGTH]
        end *= 4
    return _WS.sub(" ", text).strip()[:SNIPPET_LENGTH]


def _html_to_text(markup: str) -> str:
    return html.unescape(nh3.clean(markup, tags=set())) if markup else ""


def _header(msg: Message, name: str, parsed: ParsedMessage) -> str:
    try:
        value = msg.get(name)
    except Exception as exc:  # malformed headers raise from the policy's parsers
        parsed.defects.append(f"{name}: {exc}")
        return ""
    return _clean(str(value)) if value is not None else ""


def _addresses(msg: Message, name: str, parsed: ParsedMessage) -> list[tuple[str, str]]:
    try:
        values = [str(v) for v in msg.get_all(name, [])]
    except Exception as exc:
        parsed.defects.append(f"{name}: {exc}")
        return []
    return [(_clean(n), _clean(a)) for n, a in getaddresses(values) if a]


def _format(pair: tuple[str, str]) -> str:
    name, address = pair
    return f"{name} <{address}>" if name else address


def _msgids(value: str) -> list[str]:
    """Message-IDs in ``value``; absurdly long ones (a column holds 998) are not ids."""
    return [i for i in re.findall(r"<[^<>\s]+>", value) if len(i) <= MAX_MSGID]


def parse_message(raw: bytes) -> ParsedMessage:
    """Everything we keep about ``raw``; never raises, however broken or hostile it is.

    The MIME tree is built with a cap on the number of parts (a bomb of tiny parts costs
    the standard library's parser about half a millisecond each, so 100,000 of them would
    hold a processor for a minute) and a cap on nesting depth (the parser and ``walk()``
    recurse, so deep nesting would end in RecursionError). Past a cap, or when the tree
    cannot be built at all, what could be read is kept and the reason is a defect.
    """
    parsed = ParsedMessage()
    _parse_into(raw, parsed)
    parsed.defects = [_clean(defect)[:DEFECT_LENGTH] for defect in parsed.defects]
    return parsed


def _parse_into(raw: bytes, parsed: ParsedMessage) -> None:
    try:
        msg: Message | None = _bounded_tree(raw, parsed)
    except Exception as exc:  # RecursionError on deep nesting, or a parser bug
        parsed.defects.append(f"MIME structure unreadable ({type(exc).__name__}); headers only")
        msg = None
    if msg is not None and _depth_exceeds(msg, MAX_DEPTH):
        parsed.defects.append(f"MIME parts nested deeper than {MAX_DEPTH}; headers only")
        msg = None
    if msg is None:
        msg = _headers_only(raw, parsed)
        if msg is not None:
            _read_headers(msg, parsed)
        return
    _read_headers(msg, parsed)
    if isinstance(msg, EmailMessage):
        _read_parts(msg, parsed)


def parse_headers(raw: bytes, reason: str) -> ParsedMessage:
    """Only the header fields of ``raw``: the fallback when full parsing is not affordable."""
    parsed = ParsedMessage(defects=[reason])
    msg = _headers_only(raw, parsed)
    if msg is not None:
        _read_headers(msg, parsed)
    parsed.defects = [_clean(defect)[:DEFECT_LENGTH] for defect in parsed.defects]
    return parsed


class _PartCounter:
    """A message factory for the parser that counts the parts it creates."""

    def __init__(self) -> None:
        self.parts = 0
        self.root: EmailMessage | None = None

    def __call__(self, policy: Policy = policy.default) -> EmailMessage:
        self.parts += 1
        message = EmailMessage(policy=policy)
        if self.root is None:
            self.root = message
        return message


def _bounded_tree(raw: bytes, parsed: ParsedMessage) -> Message:
    """Feed the parser in chunks; stop feeding once past the part or the depth cap.

    The parser returns what it built so far when closed early, so the first parts of a
    bomb are still read (its text body, its first attachments).
    """
    counter = _PartCounter()
    parser = FeedParser(policy=policy.default.clone(message_factory=counter))
    text = raw.decode("ascii", "surrogateescape")  # what BytesParser does
    for start in range(0, len(text), FEED_CHUNK):
        parser.feed(text[start : start + FEED_CHUNK])
        if counter.parts > MAX_PARTS:
            parsed.defects.append(f"more than {MAX_PARTS} MIME parts; the rest is unread")
            break
        # Every line passes through one parser frame per open level, so deep nesting makes
        # parsing quadratic: stop as soon as the part being built is too deep.
        if counter.root is not None and _open_depth(counter.root) > MAX_DEPTH:
            break
    return parser.close()


def _open_depth(root: Message) -> int:
    """Length of the tree's rightmost path: the parser attaches each new part there."""
    depth, node = 0, root
    while depth <= MAX_DEPTH and node.is_multipart():
        children = node.get_payload()
        if not isinstance(children, list) or not children:
            break
        last = children[-1]
        if not isinstance(last, Message):
            break
        node, depth = last, depth + 1
    return depth


def _depth_exceeds(msg: Message, limit: int) -> bool:
    """Whether parts nest deeper than ``limit``, found without recursion."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        if depth > limit:
            return True
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend((child, depth + 1) for child in payload if isinstance(child, Message))
    return False


def _headers_only(raw: bytes, parsed: ParsedMessage) -> Message | None:
    """The header fields only, from at most HEADERS_ONLY_BYTES: the fallback must be cheap."""
    try:
        return BytesParser(policy=policy.default).parsebytes(
            raw[:HEADERS_ONLY_BYTES], headersonly=True
        )
    except Exception as exc:
        parsed.defects.append(f"unparseable: {exc}")
        return None


def _read_headers(msg: Message, parsed: ParsedMessage) -> None:
    parsed.subject = _header(msg, "Subject", parsed)
    senders = _addresses(msg, "From", parsed)
    if senders:
        parsed.from_name, parsed.from_address = senders[0][0], senders[0][1][:MAX_ADDRESS]
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
    references = _msgids(_header(msg, "References", parsed))
    if len(references) > MAX_REFERENCES:  # keep the thread's root and the nearest ancestors
        references = [references[0], *references[1 - MAX_REFERENCES :]]
    parsed.references = references


def _read_parts(msg: EmailMessage, parsed: ParsedMessage) -> None:
    try:
        for kind in ("plain", "html"):
            body = msg.get_body(preferencelist=(kind,))
            if isinstance(body, EmailMessage) and body.get_content_type() == f"text/{kind}":
                content = _text_content(body, parsed)
                if kind == "plain":
                    parsed.text = content
                else:
                    parsed.html = content
    except Exception as exc:  # a broken MIME tree still leaves the raw message readable
        parsed.defects.append(f"MIME structure: {exc}")
    try:
        for index, part in enumerate(msg.iter_attachments()):
            if index >= MAX_ATTACHMENTS:
                parsed.defects.append(
                    f"more than {MAX_ATTACHMENTS} attachments; the rest stay in the raw message"
                )
                break
            if isinstance(part, EmailMessage):
                _read_attachment(part, index, parsed)
    except Exception as exc:
        parsed.defects.append(f"MIME structure: {exc}")


def _read_attachment(part: EmailMessage, index: int, parsed: ParsedMessage) -> None:
    """One attachment; a broken one is noted and skipped, the others are still read."""
    try:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else part.as_bytes()
        content_id = part.get("Content-ID")
        parsed.attachments.append(
            ParsedAttachment(
                filename=_clean(part.get_filename() or "") or f"attachment-{index + 1}",
                content_type=part.get_content_type(),
                data=data,
                content_id=_clean(str(content_id))[:255] or None if content_id else None,
            )
        )
    except Exception as exc:
        parsed.defects.append(f"attachment {index + 1}: {exc}")


def _clean(text: str) -> str:
    """Text fit for any database column: no NUL, no lone surrogates, one line."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _WS.sub(" ", text.replace("\x00", "")).strip()


def _text_content(part: EmailMessage, parsed: ParsedMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError) as exc:
        parsed.defects.append(f"body: {exc}")
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    # PostgreSQL text cannot hold NUL, and readers want one kind of line ending.
    if not isinstance(content, str):
        return ""
    content = content.encode("utf-8", "replace").decode("utf-8")
    return content.replace("\x00", "").replace("\r\n", "\n")
