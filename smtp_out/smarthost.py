"""Smarthost mode: every message goes through one relay, with AUTH, instead of to MX hosts.

``POSTROOM_SMARTHOST_URL`` names it: ``smtp://user:password@host:587`` (STARTTLS required
before AUTH) or ``smtps://user:password@host:465`` (TLS from the first byte). Certificates are
checked unless the URL says ``?verify=0`` (a relay with a self-signed certificate). Its own rate
(``POSTROOM_SMARTHOST_RATE``, e.g. ``500/day``) is enforced by :mod:`smtp_out.limits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from postroom.errors import ConfigurationError
from smtp_out.connections import SessionOptions
from smtp_out.mx import Target

__all__ = ["Smarthost"]

_PORTS = {"smtp": 587, "smtps": 465}


@dataclass(frozen=True)
class Smarthost:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    verify: bool

    @classmethod
    def from_url(cls, url: str) -> Smarthost:
        parts = urlsplit(url)
        if parts.scheme not in _PORTS or not parts.hostname:
            raise ConfigurationError(
                f"POSTROOM_SMARTHOST_URL {parts.scheme}://{parts.hostname or ''} is not usable; "
                "write smtp://user:password@host:587 or smtps://user:password@host:465"
            )
        verify = parse_qs(parts.query).get("verify", ["1"])[0] not in ("0", "false", "no")
        return cls(
            host=parts.hostname,
            port=parts.port or _PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=parts.scheme == "smtps",
            verify=verify,
        )

    @property
    def targets(self) -> list[Target]:
        return [Target(host=self.host, address=self.host)]

    def session_options(self, helo: str, connections_per_host: int) -> SessionOptions:
        auth = (self.username, self.password or "") if self.username else None
        return SessionOptions(
            port=self.port,
            helo=helo,
            tls="require",
            verify_certificates=self.verify,
            implicit_tls=self.implicit_tls,
            auth=auth,
            connections_per_host=connections_per_host,
        )
