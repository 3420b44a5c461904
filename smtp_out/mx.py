"""Finding the hosts that accept mail for a domain (RFC 5321 section 5.1, RFC 7505).

Addresses are resolved here too, through the same resolver, rather than left to the socket
layer: the settings may point DNS at a server the system resolver does not use, and the
delivery code then never does a blocking ``getaddrinfo``.

Failures are sorted into the two kinds a delivery cares about: permanent (the domain does
not exist, or says it takes no mail) bounces at once; temporary (SERVFAIL, timeouts) retries.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
import weakref
from dataclasses import dataclass
from itertools import groupby

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.MX import MX

from postroom.errors import PostroomError
from postroom.settings import Settings

__all__ = [
    "MAX_TARGETS",
    "ResolutionFailed",
    "Target",
    "make_resolver",
    "mx_hosts",
    "resolve_targets",
]

log = logging.getLogger(__name__)

MAX_TARGETS = 10
"""Addresses tried per attempt at most, so a domain with dozens of MX hosts cannot stall us."""

DNS_LIFETIME = 20.0


class ResolutionFailed(PostroomError):
    """The domain's mail hosts cannot be found.

    ``code`` and ``status`` are the SMTP reply and enhanced status code (RFC 3463) the failure
    amounts to, so that it is recorded like any remote refusal and a later DSN can quote it.
    """

    def __init__(self, message: str, *, code: int, status: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    @property
    def permanent(self) -> bool:
        return self.code >= 500


def _temporary(message: str) -> ResolutionFailed:
    return ResolutionFailed(message, code=451, status="4.4.3")


@dataclass(frozen=True)
class Target:
    """One address to connect to, with the MX name it came from (for logs, SNI, replies)."""

    host: str
    address: str

    def __str__(self) -> str:
        return f"{self.host}[{self.address}]"


DNS_CACHE_ENTRIES = 10_000


async def make_resolver(settings: Settings) -> dns.asyncresolver.Resolver:
    """A resolver for the configured nameservers, or the system's.

    Reading the system configuration opens ``/etc/resolv.conf``, so that happens in a thread.
    """
    if not settings.nameservers:
        try:
            resolver = await asyncio.to_thread(dns.asyncresolver.Resolver)
        except dns.resolver.NoResolverConfiguration:
            # Outbound mail then defers (and says why) instead of inbound mail stopping too.
            log.warning("no system DNS configuration; set POSTROOM_DNS_NAMESERVERS")
            resolver = dns.asyncresolver.Resolver(configure=False)
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in settings.nameservers
        ]
    resolver.lifetime = DNS_LIFETIME
    # Answers are kept for their TTL (negative ones for the SOA minimum), as every MTA does:
    # a busy route would otherwise cost an MX and an A query per message.
    resolver.cache = dns.resolver.LRUCache(DNS_CACHE_ENTRIES)
    return resolver


async def resolve_targets(resolver: dns.asyncresolver.Resolver, domain: str) -> list[Target]:
    """Addresses to try for ``domain``, best first; raises :class:`ResolutionFailed`.

    A host whose lookup fails is skipped as long as another host has an address; only when
    none has one does the failure decide the outcome. A complete answer is kept (see
    :class:`_Route`) until the first of its records expires.
    """
    routes = _ROUTES.get(resolver)
    if routes is None:
        routes = _ROUTES[resolver] = {}
    route = routes.get(domain)
    if route is None or route.expires <= time.time():
        route = await _resolve_route(resolver, domain)
        if route.expires > time.time():
            if len(routes) >= DNS_CACHE_ENTRIES:
                routes.clear()  # rare, and only costs fresh lookups
            routes[domain] = route
    return route.targets()


@dataclass(frozen=True)
class _Route:
    """A domain's mail hosts by preference with their addresses, as DNS last said.

    The resolver's cache already spares the queries, but asking it costs three lookups (MX,
    A, AAAA) and a negative answer raised and formatted as an exception per message, about a
    tenth of a delivery's CPU on a busy route. Equal preferences are still shuffled on every
    use. Only complete answers are kept: a failed lookup is asked again next time.
    """

    groups: tuple[tuple[tuple[str, tuple[str, ...]], ...], ...]
    """Preference groups, best first; each a tuple of (host, addresses)."""
    expires: float
    """``time.time()`` when the first record used runs out (dnspython's ``expiration``)."""

    def targets(self) -> list[Target]:
        targets: list[Target] = []
        for group in self.groups:
            hosts = list(group)
            random.shuffle(hosts)
            targets.extend(
                Target(host, address) for host, addresses in hosts for address in addresses
            )
        return targets[:MAX_TARGETS]


_ROUTES: weakref.WeakKeyDictionary[dns.asyncresolver.Resolver, dict[str, _Route]] = (
    weakref.WeakKeyDictionary()
)


async def _resolve_route(resolver: dns.asyncresolver.Resolver, domain: str) -> _Route:
    groups, expires = await _mx_groups(resolver, domain)
    hosts = [host for group in groups for host in group]
    found = await asyncio.gather(*(_addresses(resolver, host) for host in hosts))
    addresses = dict(zip(hosts, found, strict=True))
    if any(addrs for addrs, _, _ in found):
        complete = all(error is None for _, error, _ in found)
        return _Route(
            tuple(
                tuple((host, tuple(addresses[host][0])) for host in group if addresses[host][0])
                for group in groups
            ),
            min([expires, *(until for _, _, until in found)]) if complete else 0.0,
        )
    errors = [error for _, error, _ in found if error is not None]
    if errors:
        raise _temporary(f"looking up the mail hosts of {domain} failed: {errors[0]}")
    if hosts == [domain]:
        raise ResolutionFailed(
            f"{domain} has neither MX nor address records: nothing accepts its mail",
            code=550,
            status="5.1.2",
        )
    # MX hosts without addresses are a misconfiguration its owner may still fix.
    raise _temporary(f"the mail hosts of {domain} ({', '.join(hosts)}) have no address records")


async def mx_hosts(resolver: dns.asyncresolver.Resolver, domain: str) -> list[str]:
    """MX host names by preference, equal preferences shuffled to share the load."""
    groups, _ = await _mx_groups(resolver, domain)
    hosts: list[str] = []
    for group in groups:
        names = list(group)
        random.shuffle(names)
        hosts.extend(names)
    return hosts


async def _mx_groups(
    resolver: dns.asyncresolver.Resolver, domain: str
) -> tuple[list[list[str]], float]:
    """MX host names grouped by preference (best first), and when the answer expires."""
    try:
        answer = await resolver.resolve(domain, dns.rdatatype.MX, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        raise ResolutionFailed(
            f"the domain {domain} does not exist", code=550, status="5.1.2"
        ) from None
    except dns.exception.DNSException as exc:
        raise _temporary(f"looking up the MX of {domain} failed: {exc}") from exc
    if answer.rrset is None:
        return [[domain]], answer.expiration  # no MX: the domain is the implicit MX (5.1)
    records = [r for r in answer if isinstance(r, MX)]
    if len(records) == 1 and records[0].exchange == dns.name.root:
        raise ResolutionFailed(
            f"{domain} publishes a null MX: it accepts no mail (RFC 7505)",
            code=556,
            status="5.1.10",
        )
    records = [r for r in records if r.exchange != dns.name.root]
    records.sort(key=lambda r: r.preference)
    groups: list[list[str]] = []
    seen: set[str] = set()
    for _, group in groupby(records, key=lambda r: r.preference):
        names = [r.exchange.to_text(omit_final_dot=True) for r in group]
        names = [name for name in dict.fromkeys(names) if name not in seen]
        seen.update(names)
        if names:
            groups.append(names)
    return groups, answer.expiration


async def _addresses(
    resolver: dns.asyncresolver.Resolver, host: str
) -> tuple[list[str], str | None, float]:
    """IPv4 first, then IPv6, the first lookup error if one failed temporarily, and when the
    answers expire."""
    addresses: list[str] = []
    error: str | None = None
    expires = math.inf
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = await resolver.resolve(host, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            expires = 0.0  # not kept: the resolver's cache answers again cheaply enough
            continue
        except dns.exception.DNSException as exc:
            error = error or f"{host}: {exc}"
            continue
        expires = min(expires, answer.expiration)
        if answer.rrset is not None:
            addresses.extend(record.to_text() for record in answer)
    return addresses, error, expires
