"""Writing the common send without the ``email`` package's header machinery.

``EmailMessage`` parses every header value it is given through its header registry and
renders it again, which costs an API send more than all of its database work. Most sends are
plain: ASCII addresses, a short subject, a text and maybe an html body, no attachments. For
those, :func:`plain_bytes` writes the very bytes ``EmailMessage(policy=SMTP)`` would write
(same header order, same ``Content-Transfer-Encoding`` choice, same quirks), directly. Any
request outside that shape gets ``None`` and goes through ``EmailMessage`` as before.
``tests/gateway/test_send_mime.py`` holds the two writers byte for byte equal.
"""

from __future__ import annotations

import binascii
import random
import re
import sys
from email import quoprimime

__all__ = ["plain_bytes"]

MAX_LINE = 78
"""``policy.SMTP.max_line_length``: a longer header is folded, a longer body line encoded."""

_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$"
)
"""A dot-atom address with an ASCII domain: written exactly as given."""
_TEXT = re.compile(r"^[\x21-\x7e]+( [\x21-\x7e]+)*$")
"""Printable ASCII words with single spaces: an unstructured value the header registry keeps
as it is (no leading, trailing or repeated whitespace, no tabs)."""
_ADDRESS_HEADERS = frozenset(("from", "to", "cc", "reply-to"))
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))


def plain_bytes(headers: list[tuple[str, str]], text: str | None, html: str | None) -> bytes | None:
    """The message ``EmailMessage`` would write for these headers and bodies, or ``None``.

    ``headers`` come in the order they are set, without the MIME ones; like
    :func:`gateway.compose.compose`, no text and no html is an empty text body.
    """
    if not all(_plain_header(name, value) for name, value in headers):
        return None
    head = "".join(f"{name}: {value}\r\n" if value else f"{name}:\r\n" for name, value in headers)
    if text is not None and html is not None:
        plain = _part("plain", text, root=False)
        rich = _part("html", html, root=True)  # added as an EmailMessage, which stamps it
        boundary = _boundary(plain + "\r\n" + rich)
        message = (
            f"{head}MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\n{plain}\r\n--{boundary}\r\n{rich}\r\n--{boundary}--\r\n"
        )
    elif html is None:
        message = head + _part("plain", text or "", root=True)
    else:  # an empty text body first (stamped), then replaced by the html: it comes after
        message = f"{head}MIME-Version: 1.0\r\n" + _part("html", html, root=False)
    return message.encode("utf-8", "surrogateescape")


def _plain_header(name: str, value: str) -> bool:
    if len(name) + 2 + len(value) > MAX_LINE or "=?" in value:
        return False
    if name.lower() in _ADDRESS_HEADERS:
        return all(_ADDRESS.match(address) for address in value.split(", "))
    return (value == "" and name.lower() == "subject") or bool(_TEXT.match(value))


def _part(subtype: str, content: str, *, root: bool) -> str:
    """A text part as ``set_content`` makes it; ``root``: on an ``EmailMessage``, which adds
    MIME-Version after the content headers."""
    cte, data = _encoded(content)
    version = "MIME-Version: 1.0\r\n" if root else ""
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\n{version}\r\n" + data.replace("\n", "\r\n")
    )


def _encoded(content: str) -> tuple[str, str]:
    """``email.contentmanager``'s choice of transfer encoding, and the encoded body with
    ``\\n`` line ends (the generator writes them as CRLF)."""
    lines = content.encode("utf-8").splitlines()
    normal = b"\n".join(lines) + b"\n"
    if max((len(line) for line in lines), default=0) <= MAX_LINE:
        if normal.isascii():
            return "7bit", normal.decode("ascii")
        return "8bit", normal.decode("ascii", "surrogateescape")
    embedded = b"\r\n".join(lines) + b"\r\n"
    sniff = b"\r\n".join(lines[:10]) + b"\r\n"
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), MAX_LINE)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        return "base64", _base64(embedded)
    if len(lines) <= 10:
        return "quoted-printable", sniff_qp
    return "quoted-printable", quoprimime.body_encode(normal.decode("latin-1"), MAX_LINE)


def _base64(data: bytes) -> str:
    """As ``email.contentmanager._encode_base64``: lines of whole base64 quanta."""
    per_line = MAX_LINE // 4 * 3
    return "".join(
        binascii.b2a_base64(data[start : start + per_line]).decode("ascii")
        for start in range(0, len(data), per_line)
    )


def _boundary(text: str) -> str:
    """As ``email.generator.Generator._make_boundary``: random, and absent from the parts."""
    token = random.randrange(sys.maxsize)
    boundary = "=" * 15 + f"{token:0{_BOUNDARY_DIGITS}d}" + "=="
    counter = 0
    candidate = boundary
    while re.search("^--" + re.escape(candidate) + "(--)?$", text, re.MULTILINE):
        candidate = f"{boundary}.{counter}"
        counter += 1
    return candidate
