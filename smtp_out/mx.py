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
import random
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
    none has one does the failure decide the outcome.
    """
    hosts = await mx_hosts(resolver, domain)
    found = await asyncio.gather(*(_addresses(resolver, host) for host in hosts))
    targets = [
        Target(host, address)
        for host, (addresses, _) in zip(hosts, found, strict=True)
        for address in addresses
    ]
    if targets:
        return targets[:MAX_TARGETS]
    errors = [error for _, error in found if error is not None]
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
    try:
        answer = await resolver.resolve(domain, dns.rdatatype.MX)
    except dns.resolver.NoAnswer:
        return [domain]  # no MX: the domain itself is the implicit MX (RFC 5321 5.1)
    except dns.resolver.NXDOMAIN:
        raise ResolutionFailed(
            f"the domain {domain} does not exist", code=550, status="5.1.2"
        ) from None
    except dns.exception.DNSException as exc:
        raise _temporary(f"looking up the MX of {domain} failed: {exc}") from exc
    records = [r for r in answer if isinstance(r, MX)]
    if len(records) == 1 and records[0].exchange == dns.name.root:
        raise ResolutionFailed(
            f"{domain} publishes a null MX: it accepts no mail (RFC 7505)",
            code=556,
            status="5.1.10",
        )
    records = [r for r in records if r.exchange != dns.name.root]
    records.sort(key=lambda r: r.preference)
    hosts: list[str] = []
    for _, group in groupby(records, key=lambda r: r.preference):
        names = [r.exchange.to_text(omit_final_dot=True) for r in group]
        random.shuffle(names)
        hosts.extend(names)
    return list(dict.fromkeys(hosts))


async def _addresses(
    resolver: dns.asyncresolver.Resolver, host: str
) -> tuple[list[str], str | None]:
    """IPv4 first, then IPv6, plus the first lookup error if one failed temporarily."""
    addresses: list[str] = []
    error: str | None = None
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = await resolver.resolve(host, rdtype)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            error = error or f"{host}: {exc}"
            continue
        addresses.extend(record.to_text() for record in answer)
    return addresses, error
