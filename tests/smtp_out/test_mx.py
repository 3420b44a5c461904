"""MX resolution against a real DNS server (dnsmasq serving the zone in conftest)."""

from __future__ import annotations

from pathlib import Path

import dns.asyncresolver
import pytest

from postroom.settings import Settings
from smtp_out.mx import ResolutionFailed, Target, make_resolver, resolve_targets
from tests.smtp_out.conftest import BARE, MX1, MX2


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
