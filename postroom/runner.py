"""Running roles: open storage once, start each role, and stop them all gracefully on a signal.

``postroom up`` runs every role in this process; ``postroom run ROLE`` runs one. Roles share
nothing but the storage handle, exactly as separate processes share the database, queues and
bus, so the one-process and the many-process layouts behave alike.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select

from postroom.health_server import health_server_for
from postroom.service import Service
from postroom.settings import Settings
from storage.db.models import Domain
from storage.registry import Storage, open_storage
from storage.schema import check_schema

__all__ = ["ALL_ROLES", "ROLES", "build_role", "run_roles"]

log = logging.getLogger("postroom")

# Role name -> "module:Class"; imported only when the role runs, so admin commands stay quick.
ROLES: dict[str, str] = {
    "processor": "smtp_in.processor:Processor",
    "smtp-out": "smtp_out.worker:DeliveryWorker",
    "realtime": "realtime.server:RealtimeServer",
    "smtp-in": "smtp_in.server:SmtpServer",
    "gateway": "gateway.service:Gateway",
}
# Workers start before listeners, so nothing is accepted that nobody would process.
ALL_ROLES = list(ROLES)


def build_role(role: str, store: Storage) -> Service:
    module, _, name = ROLES[role].partition(":")
    service: Service = getattr(importlib.import_module(module), name)(store)
    return service


async def run_roles(settings: Settings, roles: list[str]) -> None:
    with _stop_signals() as stop:
        await _run_until(stop, settings, roles)


async def _run_until(stop: asyncio.Event, settings: Settings, roles: list[str]) -> None:
    store = open_storage(settings)
    started: list[Service] = []
    try:
        await check_schema(store.db)
        for role in roles:
            service = build_role(role, store)
            addresses = await service.start()
            started.append(service)
            for address in addresses:
                log.info("%s listening on %s", role, address)
        if (health := health_server_for(store, roles)) is not None:
            for address in await health.start():
                log.info("health and metrics listening on %s", address)
            started.append(health)
        await _hint_when_empty(store)
        # What starting made (modules, the app, compiled statements, pools) lives as long as
        # the process: frozen, the full collections no longer walk it again and again. Under
        # 50 concurrent API clients they paused the event loop long enough to be the p99.
        gc.freeze()
        log.info("postroom is up (%s); stop with Ctrl-C or SIGTERM", ", ".join(roles))
        await stop.wait()
        grace = settings.shutdown_grace_seconds
        log.info("stopping: taking no new work, finishing what is in flight (up to %.0f s)", grace)
    finally:
        began = time.monotonic()
        await asyncio.gather(*(s.stop(settings.shutdown_grace_seconds) for s in reversed(started)))
        await store.close()
        if started:
            log.info("stopped in %.1f s", time.monotonic() - began)


@contextmanager
def _stop_signals() -> Iterator[asyncio.Event]:
    """An event SIGTERM and SIGINT set, from before the first role starts.

    Taken over only after "postroom is up" was logged, a signal sent on reading that line (a
    supervisor, the tests) could arrive first and kill the process with the default action,
    nothing stopped gracefully. A signal during startup now stops it as soon as it is up.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _hint_when_empty(store: Storage) -> None:
    async with store.db.session() as session:
        domains = await session.scalar(select(func.count()).select_from(Domain))
    if not domains:
        log.info(
            "no domains yet: add one with `postroom domain add example.com`, then a user with "
            "`postroom user add you@example.com --password ...`"
        )
