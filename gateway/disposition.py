"""Headers for a download the browser must save, never render (RFC 6266).

Mail attachments are written by strangers. Served inline from our origin, an HTML or SVG
attachment would run script as the reader; ``attachment`` plus ``nosniff`` plus a sandboxing
CSP makes the browser save it instead. The filename goes out twice: an ASCII fallback with
anything risky replaced, and the exact name as RFC 8187 ``filename*``.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

__all__ = ["attachment_headers", "safe_content_type"]

_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|;%]')
_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_FALLBACK = "attachment"
_MAX_NAME = 200


def _clean(filename: str) -> str:
    """The name with path parts, control characters and quoting hazards removed."""
    name = unicodedata.normalize("NFC", filename).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:_MAX_NAME] or _FALLBACK


def attachment_headers(filename: str) -> dict[str, str]:
    name = _clean(filename)
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    disposition = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        disposition += f"; filename*=UTF-8''{quote(name, safe='')}"
    return {
        "Content-Disposition": disposition,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }


def safe_content_type(content_type: str) -> str:
    """The declared type if well-formed (lowercased), else ``application/octet-stream``."""
    declared = content_type.split(";", 1)[0].strip().lower()
    return declared if _MIME.match(declared) else "application/octet-stream"
