"""The Prometheus metrics every role exports, in one registry per process.

Metric objects live here, apart from the code that updates them, so that a reader sees every
name and label in one place and a role only imports what it counts. Updating a counter is a
dictionary lookup and an addition under a lock: cheap enough for every SMTP reply and HTTP
request. Values that the database knows better (queue depth and age) are not counted at all
but read from it at scrape time (:mod:`postroom.queue_gauges`).

Labels are kept to small, fixed sets (an outcome, a port, a reply code, a route template), so
the number of series stays bounded whatever the traffic.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    generate_latest,
)

import postroom

__all__ = [
    "BUILD",
    "CONTENT_TYPE",
    "DELIVERIES",
    "HTTP_LATENCY",
    "INBOUND_FILED",
    "QUEUE_DEPTH",
    "QUEUE_OLDEST_AGE",
    "SMTP_REPLIES",
    "SMTP_SESSIONS",
    "WEBSOCKET_CONNECTIONS",
    "exposition",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# No ``*_created`` series: when a counter started is not worth a series of its own.
disable_created_metrics()  # type: ignore[no-untyped-call]

QUEUE_DEPTH = Gauge(
    "postroom_queue_depth",
    "Work waiting, read from the database at scrape time: inbound (accepted, not yet filed), "
    "outbound_due (deliveries due now), deferred (deliveries waiting for a retry).",
    ["queue"],
)
QUEUE_OLDEST_AGE = Gauge(
    "postroom_queue_oldest_age_seconds",
    "Age of the oldest entry of each queue (inbound: since accepted; outbound_due: since it "
    "fell due; deferred: since the message was sent); 0 when the queue is empty.",
    ["queue"],
)
DELIVERIES = Counter(
    "postroom_deliveries",
    "Outbound delivery attempts by the status they left the delivery in "
    "(delivered, deferred, bounced, partial, held).",
    ["outcome"],
)
INBOUND_FILED = Counter(
    "postroom_inbound_filed",
    "Inbound messages filed by the processors, by the mailbox role they went to.",
    ["mailbox"],
)
SMTP_SESSIONS = Counter(
    "postroom_smtp_sessions", "SMTP connections accepted, by listening port.", ["port"]
)
SMTP_REPLIES = Counter(
    "postroom_smtp_replies",
    "SMTP replies sent, by listening port and reply code.",
    ["port", "code"],
)
HTTP_LATENCY = Histogram(
    "postroom_http_request_duration_seconds",
    "Gateway request latency, by method, route template (not the raw path) and status.",
    ["method", "route", "status"],
)
WEBSOCKET_CONNECTIONS = Gauge(
    "postroom_websocket_connections", "Open WebSocket connections on this realtime process."
)
BUILD = Info("postroom_build", "The postroom version this process runs.")
BUILD.info({"version": postroom.__version__})


def exposition() -> bytes:
    """Every metric of this process in the Prometheus text format."""
    return generate_latest(REGISTRY)
