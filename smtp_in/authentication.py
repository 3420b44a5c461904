"""SPF, DKIM and DMARC for mail arriving from other servers, as one ``Authentication-Results``.

dkimpy verifies signatures and pyspf evaluates SPF; DMARC (RFC 7489: policy discovery through
the organizational domain, relaxed or strict alignment) is the few lines below, because the
libraries that offer it mis-read From domains with a hyphen in them. Every DNS query goes
through one dnspython resolver built from ``POSTROOM_DNS_NAMESERVERS`` (the system's when
unset), with a cache, so a burst from one sender costs its records once.

Both libraries block, so :func:`authenticate` runs in a thread. pyspf has no resolver
parameter, only a module-level lookup hook; the hook installed here reads the resolver of the
check in progress from a context variable, which ``asyncio.to_thread`` carries into the thread.

A DNS failure yields ``temperror`` for that method, never a crash: the message is still filed,
and only a definite DMARC ``fail`` under a ``reject`` or ``quarantine`` policy sends it to Junk.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any

import dkim
import dns.exception
import dns.nameserver
import dns.resolver
import spf
from authres import (
    AuthenticationResultsHeader,
    DKIMAuthenticationResult,
    SPFAuthenticationResult,
)
from authres.dmarc import DMARCAuthenticationResult
from publicsuffix2 import PublicSuffixList

from postroom.settings import Settings

__all__ = [
    "AuthenticationResults",
    "DmarcResult",
    "authenticate",
    "make_resolver",
    "verify",
]

log = logging.getLogger(__name__)

DNS_LIFETIME = 5.0
"""Seconds one DNS question may take; a server that does not answer yields temperror."""
SPF_SECONDS = 20.0
"""The whole SPF evaluation (RFC 7208 4.6.4 recommends at least 20 s)."""
MAX_SIGNATURES = 5
"""DKIM signatures tried per message; more is a way to make us do work, not real mail."""
JUNK_POLICIES = ("reject", "quarantine")

MAX_HEADER = 2000
_UNSAFE = re.compile(r"[^\x20-\x7e]")

_resolver: contextvars.ContextVar[dns.resolver.Resolver] = contextvars.ContextVar("resolver")


@dataclass(frozen=True)
class DmarcResult:
    result: str
    """pass | fail | none | temperror | permerror"""
    from_domain: str = ""
    policy: str = ""
    """The policy that applies to this From domain (p=, or sp= for a subdomain), if any."""


@dataclass(frozen=True)
class AuthenticationResults:
    """What one message's authentication found; ``header`` is the field we add, CRLF-ended."""

    spf: str
    dkim: str
    dkim_domains: tuple[str, ...]
    dmarc: DmarcResult
    header: str = field(repr=False)

    @property
    def dmarc_says_junk(self) -> bool:
        """A DMARC failure whose domain asks receivers to reject or quarantine it."""
        return self.dmarc.result == "fail" and self.dmarc.policy in JUNK_POLICIES

    def summary(self) -> dict[str, Any]:
        """What the message metadata keeps (and the API can show)."""
        return {
            "spf": self.spf,
            "dkim": self.dkim,
            "dkim_domains": list(self.dkim_domains),
            "dmarc": self.dmarc.result,
            "dmarc_policy": self.dmarc.policy,
            "from_domain": self.dmarc.from_domain,
        }


def make_resolver(settings: Settings) -> dns.resolver.Resolver:
    """A caching resolver for the configured nameservers (reads resolv.conf when unset)."""
    if settings.nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(host, port) for host, port in settings.nameservers
        ]
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            log.warning("no system DNS configuration; SPF/DKIM/DMARC will give temperror")
            resolver = dns.resolver.Resolver(configure=False)
    resolver.lifetime = DNS_LIFETIME
    resolver.cache = dns.resolver.LRUCache(10_000)
    return resolver


async def verify(
    raw: bytes,
    *,
    ip: str,
    helo: str,
    mail_from: str,
    authserv_id: str,
    resolver: dns.resolver.Resolver,
) -> AuthenticationResults:
    """:func:`authenticate` in a thread: dkimpy and pyspf block on DNS."""
    call = functools.partial(
        authenticate,
        raw,
        ip=ip,
        helo=helo,
        mail_from=mail_from,
        authserv_id=authserv_id,
        resolver=resolver,
    )
    return await asyncio.to_thread(call)


def authenticate(
    raw: bytes,
    *,
    ip: str,
    helo: str,
    mail_from: str,
    authserv_id: str,
    resolver: dns.resolver.Resolver,
) -> AuthenticationResults:
    """SPF for the connecting ``ip``, DKIM signatures, then DMARC from both. Never raises."""
    token = _resolver.set(resolver)
    try:
        return _authenticate(raw, ip=ip, helo=helo, mail_from=mail_from, authserv_id=authserv_id)
    finally:
        _resolver.reset(token)


def _authenticate(
    raw: bytes, *, ip: str, helo: str, mail_from: str, authserv_id: str
) -> AuthenticationResults:
    spf_result = _check_spf(ip, helo, mail_from)
    dkim_results = _check_dkim(raw)
    dmarc = _check_dmarc(raw, spf_result, dkim_results)
    passing = tuple(r.header_d for r in dkim_results if r.result == "pass")
    if passing:
        dkim_summary = "pass"
    elif dkim_results:
        dkim_summary = str(dkim_results[0].result)
    else:
        dkim_summary = "none"
    results: list[Any] = [spf_result, *dkim_results]
    if not dkim_results:
        results.append(DKIMAuthenticationResult(result="none"))
    results.append(
        DMARCAuthenticationResult(
            result=dmarc.result,
            header_from=dmarc.from_domain or None,
            policy=dmarc.policy or None,
        )
    )
    # Values come from DNS (an SPF exp= text), headers and the envelope: no CR, LF or
    # non-ASCII may reach the header we write.
    header = _UNSAFE.sub(
        "?", str(AuthenticationResultsHeader(authserv_id=authserv_id, results=results))
    )[:MAX_HEADER]
    return AuthenticationResults(
        spf=str(spf_result.result),
        dkim=dkim_summary,
        dkim_domains=passing,
        dmarc=dmarc,
        header=_fold(header),
    )


# -- SPF ------------------------------------------------------------------------------------


def _check_spf(ip: str, helo: str, mail_from: str) -> SPFAuthenticationResult:
    """RFC 7208 on MAIL FROM; for the null sender, on ``postmaster@HELO`` as 2.4 says."""
    sender = mail_from or (f"postmaster@{helo}" if helo else "")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return SPFAuthenticationResult(result="none", reason="no client address to check")
    if "@" not in sender:
        return SPFAuthenticationResult(result="none", reason="no sender domain to check")
    try:
        result, explanation = spf.check2(i=ip, s=sender, h=helo or "unknown", querytime=SPF_SECONDS)
    except Exception as exc:  # pyspf raises on some malformed input rather than permerror
        log.warning("SPF check of %s from %s failed: %s", sender, ip, exc)
        return SPFAuthenticationResult(result="permerror", smtp_mailfrom=sender)
    return SPFAuthenticationResult(
        result=result,
        reason=str(explanation)[:200] or None,
        smtp_mailfrom=sender if mail_from else None,
        smtp_helo=helo if not mail_from else None,
    )


def _spf_lookup(name: str, qtype: str, strict: bool = True, timeout: float = 30) -> list[Any]:
    """pyspf's DNSLookup contract: ``[((name, qtype), value), ...]`` or TempError."""
    resolver = _resolver.get(None)
    if resolver is None:
        raise spf.TempError("DNS: no resolver configured for this check")
    try:
        answer = resolver.resolve(name, qtype, lifetime=min(timeout, resolver.lifetime))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise spf.TempError(f"DNS {exc}") from None
    found: list[Any] = []
    for rdata in answer:
        if qtype in ("A", "AAAA"):
            found.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            found.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            found.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            found.append(((name, qtype), rdata.strings))
    return found


spf.DNSLookup = _spf_lookup


# -- DKIM -----------------------------------------------------------------------------------


def _dkim_txt(name: bytes, timeout: float = 5) -> bytes | None:
    """dkimpy's dnsfunc contract: the TXT record's strings joined, or None."""
    resolver = _resolver.get(None)
    if resolver is None:
        raise dkim.DnsTimeoutError("no resolver configured for this check")
    try:
        answer = resolver.resolve(name.decode("ascii", "replace"), "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.DNSException as exc:
        raise dkim.DnsTimeoutError(str(exc)) from None
    for rdata in answer:
        return b"".join(rdata.strings)
    return None


def _check_dkim(raw: bytes) -> list[DKIMAuthenticationResult]:
    """One result per signature (up to MAX_SIGNATURES); an empty list when there is none."""
    try:
        verifier = dkim.DKIM(raw)
        headers = [
            value for name, value in dkim.rfc822_parse(raw)[0] if name.lower() == b"dkim-signature"
        ]
    except Exception:
        return [DKIMAuthenticationResult(result="permerror", reason="unreadable message")]
    results: list[DKIMAuthenticationResult] = []
    for index in range(min(len(headers), MAX_SIGNATURES)):
        tags = _tags(headers[index])
        domain, selector = tags.get("d", ""), tags.get("s", "")
        try:
            good = verifier.verify(idx=index, dnsfunc=_dkim_txt)
            result = "pass" if good else "fail"
        except dkim.DnsTimeoutError:
            result = "temperror"
        except dkim.KeyFormatError:
            result = "permerror"
        except Exception:  # dkimpy's ValidationError and friends: a broken signature
            result = "fail"
        results.append(
            DKIMAuthenticationResult(
                result=result, header_d=domain or None, header_s=selector or None
            )
        )
    return results


def _tags(value: bytes) -> dict[str, str]:
    text = value.decode("ascii", "replace")
    tags: dict[str, str] = {}
    for item in text.split(";"):
        name, equals, tag_value = item.partition("=")
        if equals:
            tags[name.strip().lower()] = "".join(tag_value.split())
    return tags


# -- DMARC ----------------------------------------------------------------------------------


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix plus one label (``mail.example.co.uk`` -> example.co.uk).

    A name under a suffix the list does not know (``.test``) falls back to the list's
    implicit ``*`` rule: its last label is the suffix.
    """
    domain = domain.lower().rstrip(".")
    suffix = _suffixes().get_tld(domain) or domain.rsplit(".", 1)[-1]
    if domain == suffix or not domain.endswith("." + suffix):
        return domain
    head = domain[: -len(suffix) - 1]
    return f"{head.rsplit('.', 1)[-1]}.{suffix}"


def _dmarc_record(domain: str) -> dict[str, str] | None:
    """The tags of the one DMARC record at ``_dmarc.domain``; None when there is not one."""
    resolver = _resolver.get()
    try:
        answer = resolver.resolve(f"_dmarc.{domain}", "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    records = [b"".join(rdata.strings).decode("ascii", "replace") for rdata in answer]
    found = [r for r in records if r.replace(" ", "").lower().startswith("v=dmarc1")]
    if len(found) != 1:
        return None  # RFC 7489 6.6.3: none, or more than one, means no policy
    tags: dict[str, str] = {}
    for item in found[0].split(";"):
        name, equals, value = item.partition("=")
        if equals:
            tags[name.strip().lower()] = value.strip().lower()
    return tags if tags.get("p") in ("none", "quarantine", "reject") else None


def _from_domains(raw: bytes) -> list[str]:
    try:
        headers, _ = dkim.rfc822_parse(raw)
    except Exception:
        return []
    values = [
        v.decode("utf-8", "replace").replace("\r\n", "") for n, v in headers if n.lower() == b"from"
    ]
    domains = [a.rsplit("@", 1)[1].lower() for _, a in getaddresses(values) if "@" in a]
    return list(dict.fromkeys(d for d in domains if d))


def _aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


def _check_dmarc(
    raw: bytes, spf_result: SPFAuthenticationResult, dkim_results: Iterable[Any]
) -> DmarcResult:
    """Evaluate every From domain; the worst outcome counts (a second From cannot hide one)."""
    domains = _from_domains(raw)
    if not domains:
        return DmarcResult("none")
    spf_domain = ""
    if spf_result.result == "pass" and spf_result.smtp_mailfrom:
        spf_domain = str(spf_result.smtp_mailfrom).rsplit("@", 1)[-1]
    dkim_domains = [str(r.header_d) for r in dkim_results if r.result == "pass" and r.header_d]
    outcomes = [_dmarc_for(d, spf_domain, dkim_domains) for d in domains]
    for wanted in ("fail", "temperror", "permerror", "pass"):
        matching = [o for o in outcomes if o.result == wanted]
        if matching:
            return max(matching, key=lambda o: _STRICTNESS.get(o.policy, 0))
    return outcomes[0]


_STRICTNESS = {"reject": 2, "quarantine": 1}


def _dmarc_for(from_domain: str, spf_domain: str, dkim_domains: list[str]) -> DmarcResult:
    try:
        record = _dmarc_record(from_domain)
        subdomain = False
        if record is None:
            org = organizational_domain(from_domain)
            if org != from_domain:
                record = _dmarc_record(org)
                subdomain = True
    except dns.exception.DNSException:
        return DmarcResult("temperror", from_domain)
    if record is None:
        return DmarcResult("none", from_domain)
    policy = record.get("sp", record["p"]) if subdomain else record["p"]
    if policy not in ("none", "quarantine", "reject"):
        policy = record["p"]
    spf_aligned = bool(spf_domain) and _aligned(from_domain, spf_domain, record.get("aspf", "r"))
    dkim_aligned = any(_aligned(from_domain, d, record.get("adkim", "r")) for d in dkim_domains)
    return DmarcResult("pass" if spf_aligned or dkim_aligned else "fail", from_domain, policy)


def _fold(header: str) -> str:
    """Fold the header before each result so no line passes RFC 5322's 78 characters."""
    name, _, value = header.partition(": ")
    parts = [p.strip() for p in value.split("; ")]
    return f"{name}: " + ";\r\n\t".join(parts) + "\r\n"
