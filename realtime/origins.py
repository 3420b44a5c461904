"""Which browser pages may open a WebSocket here: the ``Origin`` check of the handshake.

Tokens travel in the URL or the first message, not in cookies, so a foreign page cannot ride on
a user's session; the check still keeps other sites' scripts from using this server at all.
Clients that send no ``Origin`` (programs, not browsers) are let in: only browsers send one.
"""

from __future__ import annotations

from postroom.settings import Settings

__all__ = ["Origins"]


class Origins:
    def __init__(self, settings: Settings) -> None:
        configured = settings.realtime_allowed_origins
        if configured is None:
            port = settings.http_port
            hosts = (settings.hostname, "localhost", "127.0.0.1")
            items = {f"{scheme}://{host}:{port}" for host in hosts for scheme in ("http", "https")}
        else:
            items = {item.strip().rstrip("/") for item in configured.split(",") if item.strip()}
        self.any = "*" in items
        self.allowed = frozenset(item.lower() for item in items)

    def accepts(self, origin: str | None) -> bool:
        return origin is None or self.any or origin.rstrip("/").lower() in self.allowed
