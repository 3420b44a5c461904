"""MX resolution against a real DNS server (dnsmasq serving the zone in conftest)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncresolver
import pytest

from postroom.settings import Settings
from smtp_out.mx import ResolutionFailed, Target, make_resolver, resolve_targets
from tests.smtp_out.conftest import BARE, MX1, MX2, ZONE
from tests.support.dnsmasq import Dnsmasq, DnsmasqFailed
from tests.support.services import require


@pytest.fixture
async def resolver(tmp_path: Path, dns_port: int) -> dns.asyncresolver.Resolver:
    settings = Settings(data_dir=tmp_path, dns_nameservers=f"127.0.0.1:{dns_port}")
    return await make_resolver(settings)


async def test_mx_hosts_by_preference(resolver: dns.asyncresolver.Resolver) -> None:
    assert await resolve_targets(resolver, "remote.test") == [
        Target("mx1.remote.test", MX1),
        Target("mx2.remote.test", MX2),
    ]


async def test_equal_preferences_are_shuffled(resolver: dns.asyncresolver.Resolver) -> None:
    orders = {
        tuple(t.host for t in await resolve_targets(resolver, "equal.test")) for _ in range(40)
    }
    assert orders == {("a.equal.test", "b.equal.test"), ("b.equal.test", "a.equal.test")}


async def test_no_mx_means_the_domain_itself(resolver: dns.asyncresolver.Resolver) -> None:
    assert await resolve_targets(resolver, "nomx.test") == [Target("nomx.test", BARE)]


@pytest.mark.parametrize(
    ("domain", "code", "status"),
    [
        ("nullmx.test", 556, "5.1.10"),  # RFC 7505
        ("missing.test", 550, "5.1.2"),  # NXDOMAIN
        ("elsewhere.example", 451, "4.4.3"),  # the server refuses: try again later
        ("dangling.test", 451, "4.4.3"),  # MX host without an address
    ],
)
async def test_failures(
    resolver: dns.asyncresolver.Resolver, domain: str, code: int, status: str
) -> None:
    with pytest.raises(ResolutionFailed) as failure:
        await resolve_targets(resolver, domain)
    assert (failure.value.code, failure.value.status) == (code, status)
    assert failure.value.permanent == (code >= 500)
    assert domain in failure.value.message


@pytest.fixture
async def caching_resolver(tmp_path: Path) -> AsyncIterator[dns.asyncresolver.Resolver]:
    """A resolver on the test zone served with a TTL (the shared server answers with TTL 0,
    which nothing keeps)."""
    server = Dnsmasq()
    try:
        await asyncio.to_thread(server.start, [*ZONE, "--local-ttl=300"], "mx1.remote.test")
    except DnsmasqFailed as exc:
        require(False, str(exc))
        raise
    try:
        settings = Settings(data_dir=tmp_path, dns_nameservers=f"127.0.0.1:{server.port}")
        yield await make_resolver(settings)
    finally:
        server.stop()


def _lookups(resolver: dns.asyncresolver.Resolver, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names ``resolver`` is asked from now on (it still asks the real dnsmasq)."""
    asked: list[str] = []
    original = resolver.resolve

    async def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(name).rstrip("."))
        return await original(name, *args, **kwargs)

    monkeypatch.setattr(resolver, "resolve", counting)
    return asked


async def test_an_answer_is_kept_until_its_records_expire(
    caching_resolver: dns.asyncresolver.Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolver = caching_resolver
    expected = [Target("mx1.remote.test", MX1), Target("mx2.remote.test", MX2)]
    assert await resolve_targets(resolver, "remote.test") == expected
    asked = _lookups(resolver, monkeypatch)
    assert await resolve_targets(resolver, "remote.test") == expected
    assert asked == [], "kept: no lookup at all, not even from the resolver's cache"

    later = time.time() + 301  # past the TTL
    monkeypatch.setattr(time, "time", lambda: later)
    assert await resolve_targets(resolver, "remote.test") == expected
    assert "remote.test" in asked, "expired: asked again"


async def test_a_failed_lookup_is_not_kept(
    caching_resolver: dns.asyncresolver.Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A domain whose DNS is broken now is asked again on the next delivery, not given up."""
    resolver = caching_resolver
    with pytest.raises(ResolutionFailed):
        await resolve_targets(resolver, "dangling.test")
    asked = _lookups(resolver, monkeypatch)
    with pytest.raises(ResolutionFailed):
        await resolve_targets(resolver, "dangling.test")
    assert asked, "the failure was not kept: the domain was looked up again"
