"""Sanitising HTML mail for display: nh3 (ammonia) with remote images blocked by default.

Remote images are tracking pixels as often as pictures, so their ``src`` is dropped unless the
reader asked for them (``?images=1``).
"""

from __future__ import annotations

import nh3

__all__ = ["sanitize_html"]

_REMOTE = ("http://", "https://", "//")


def sanitize_html(markup: str, *, allow_remote_images: bool = False) -> str:
    if not markup:
        return ""

    def keep(element: str, attribute: str, value: str) -> str | None:
        if element == "img" and attribute == "src" and value.strip().lower().startswith(_REMOTE):
            return value if allow_remote_images else None
        return value

    cleaned: str = nh3.clean(markup, attribute_filter=keep)
    return cleaned
