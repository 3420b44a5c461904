"""Ports for the servers tests start: outside the kernel's ephemeral range, one slice per worker.

A port asked of the kernel with ``bind(0)`` comes from the ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 on Debian), the same range every
outgoing connection's local port is drawn from. Between the probe closing and the server
binding it (seconds, for a ``postroom run`` role starting on a loaded machine) any connection
to PostgreSQL or Redis, or another pytest-xdist worker's probe, can take it: CI once lost a
whole module to "address already in use". Ports handed out here lie below that range, where
the kernel never picks, in a slice of their own per xdist worker, and never twice per process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
from collections.abc import Iterator, Sequence

__all__ = ["free_port"]

FIRST = 20000
LAST = 32000
"""Below the ephemeral range (and above the ports system services listen on)."""
SLICES = 8
"""xdist workers the range is split between (gw0..gw7; more wrap around and still probe)."""


def _worker_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) % SLICES if worker.isdigit() else 0
    width = (LAST - FIRST) // SLICES
    return range(FIRST + index * width, FIRST + (index + 1) * width)


def _candidates() -> Iterator[int]:
    return itertools.cycle(_worker_slice())


_next = _candidates()


def free_port(
    addresses: Sequence[str] = ("127.0.0.1",), kinds: Sequence[int] = (socket.SOCK_STREAM,)
) -> int:
    """A port nothing is bound to on every address given, for every socket kind given."""
    for _ in range(len(_worker_slice())):
        port = next(_next)
        with contextlib.ExitStack() as stack:
            try:
                for address in addresses:
                    for kind in kinds:
                        sock = stack.enter_context(socket.socket(socket.AF_INET, kind))
                        sock.bind((address, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free on all of {addresses} in {_worker_slice()}")
