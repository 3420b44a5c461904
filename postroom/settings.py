"""The one settings object.

Read from ``POSTROOM_*`` environment variables, then an optional ``postroom.toml`` in the
working directory (or the file named by ``POSTROOM_CONFIG``); environment wins. Every URL left
unset falls back to an embedded default under ``data_dir`` so that ``postroom up`` needs no
server at all.
"""

from __future__ import annotations

import os
import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="POSTROOM_",
        toml_file=os.environ.get("POSTROOM_CONFIG", "postroom.toml"),
        extra="ignore",
    )

    data_dir: Path = Path("./data")
    database_url: str = ""
    redis_url: str | None = None
    blob_url: str = ""
    s3_endpoint_url: str | None = None
    search_url: str | None = Field(
        default=None,
        description="Unset: full-text search in the metadata database (SQLite FTS5 or "
        "PostgreSQL tsvector); http(s)://host:9200 for OpenSearch.",
    )

    listen_address: str = Field(
        default="127.0.0.1",
        description="Address every server binds; 0.0.0.0 in production.",
    )
    http_port: int = 8080
    smtp_port: int = 2525
    submission_port: int = 2587
    realtime_port: int = 8081
    health_port: int = Field(
        default=8082,
        description="/healthz, /readyz and /metrics of smtp-in, processor and smtp-out (one "
        "server for `postroom up`); 0 turns it off. The gateway and realtime serve them on "
        "their own ports.",
    )
    hostname: str = Field(default_factory=socket.getfqdn)

    dns_nameservers: str | None = Field(
        default=None, description="Comma-separated host[:port] list; unset uses the system."
    )
    delivery_port: int = 25
    delivery_tls: Literal["opportunistic", "require", "off"] = Field(
        default="opportunistic",
        description="STARTTLS to other servers: use when offered, insist on it, or never.",
    )
    delivery_attempt_seconds: float = Field(
        default=1200.0,
        description="Longest one delivery attempt may take; a crashed worker's delivery is "
        "retried about this long after the crash.",
    )
    delivery_concurrency: int = Field(default=8, description="Deliveries one worker runs at once.")
    delivery_connections_per_host: int = Field(
        default=4, description="Concurrent connections one worker opens to one MX host."
    )
    delivery_domain_rate: str | None = Field(
        default=None,
        description="Messages per recipient domain, in `limits` notation (e.g. '100/minute').",
    )
    smarthost_url: str | None = Field(
        default=None,
        description="Relay all outgoing mail through smtp://user:password@host:port instead of MX.",
    )
    smarthost_rate: str | None = Field(
        default=None, description="Messages through the smarthost, e.g. '500/day'."
    )
    retry_first_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    retry_give_up_days: float = 5.0
    delay_notice_hours: float = Field(
        default=4.0, description="Tell the sender when a message is still undelivered after this."
    )
    suppression_days: float = Field(
        default=30.0, description="How long a hard-bounced address stays suppressed."
    )
    dkim_selector: str = Field(default="postroom", description="Selector of generated DKIM keys.")
    content_check_url: str | None = Field(
        default=None,
        description="Spam/virus check: unset for none, spamd://host:port for SpamAssassin.",
    )
    sweep_interval_seconds: float = 30.0
    sweep_age_seconds: float = Field(
        default=60.0, description="Work due this long without progress is enqueued again."
    )
    redis_prefix: str = Field(default="postroom:", description="Prefix of every Redis key.")
    realtime_allowed_origins: str | None = Field(
        default=None,
        description="Comma-separated browser origins the WebSocket server accepts ('*' for "
        "any); unset accepts the gateway's own (http://HOSTNAME|localhost|127.0.0.1:HTTP_PORT).",
    )
    token_cache_seconds: float = Field(
        default=0.0,
        ge=0,
        le=60,
        description="Seconds a gateway process trusts a bearer token it validated without "
        "looking it up again; a token revoked by another process (another gateway, the CLI) is "
        "accepted that long. 0: every request looks the token up.",
    )
    realtime_public_url: str | None = Field(
        default=None,
        pattern=r"^wss?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/\-]*)?$",
        description="The WebSocket URL browsers connect to when a proxy serves it (e.g. "
        "wss://mail.example.com/ws); unset: ws://<the page's host>:REALTIME_PORT/ws.",
    )
    realtime_max_connections_per_user: int = Field(
        default=20, description="WebSocket connections one user may hold on one realtime process."
    )
    realtime_send_queue: int = Field(
        default=256,
        description="Events waiting for one slow WebSocket client before it is served from the "
        "change log instead.",
    )
    realtime_ping_interval_seconds: float = Field(
        default=20.0, description="How often the WebSocket server pings each client."
    )
    realtime_ping_timeout_seconds: float = Field(
        default=20.0, description="A client that has not answered a ping by then is closed."
    )

    max_message_size: int = 25 * 1024 * 1024
    send_undo_seconds: float = Field(
        default=0.0,
        description="Undo window: API sends wait this long, cancellable with DELETE /send/{id}.",
    )
    rate_send_user: str = Field(
        default="30/minute;1000/day",
        description="API sends per user, in `limits` notation; empty for no limit.",
    )
    rate_send_ip: str = Field(default="60/minute;5000/day", description="API sends per client IP.")
    rate_read_user: str = Field(default="600/minute", description="API reads per user.")
    rate_read_ip: str = Field(default="3000/minute", description="API reads per client IP.")
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate chain for STARTTLS on the SMTP ports; unset: a "
        "self-signed one is generated under the data dir on first start.",
    )
    tls_key_file: Path | None = Field(default=None, description="PEM key of tls_cert_file.")
    max_recipients: int = Field(default=100, description="RCPT TO per message; more get 452.")
    max_sessions_per_ip: int = Field(
        default=50, description="Concurrent SMTP sessions one client address may hold."
    )
    smtp_command_timeout_seconds: float = Field(
        default=300.0, description="Idle time allowed between SMTP commands (RFC 5321 4.5.3.2)."
    )
    smtp_data_timeout_seconds: float = Field(
        default=180.0, description="Idle time allowed while a message is being sent (DATA)."
    )
    submission_plaintext_auth: bool = Field(
        default=False,
        description="Allow AUTH without STARTTLS on the submission port for loopback clients "
        "(local development only).",
    )
    submission_auth_ip_rates: str = Field(
        default="10/minute;100/hour", description="Failed AUTH attempts allowed per client IP."
    )
    submission_auth_user_rates: str = Field(
        default="5/minute;30/hour", description="Failed AUTH attempts allowed per user name."
    )
    token_ttl_seconds: int = 7 * 24 * 3600
    shutdown_grace_seconds: float = 8.0
    processor_concurrency: int = 4
    queue_lease_seconds: float = 120.0
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one readable line per record; json: one JSON object per line "
        "(production), with the message id of the mail it concerns.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'postroom.db'}"
        if not self.blob_url:
            self.blob_url = f"file://{self.data_dir / 'blobs'}"
        return self

    @cached_property
    def nameservers(self) -> list[tuple[str, int]]:
        """``dns_nameservers`` parsed into (host, port) pairs; empty means the system's."""
        result: list[tuple[str, int]] = []
        for item in (self.dns_nameservers or "").split(","):
            item = item.strip()
            if not item:
                continue
            host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
            result.append((host, int(port)) if port else (item, 53))
        return result
