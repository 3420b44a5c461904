"""SPF, DKIM and DMARC of arriving mail (issue 3, point 9), through a real DNS server.

dnsmasq publishes SPF, DKIM and DMARC records for a few sender domains; the checks query it
through the resolver ``POSTROOM_DNS_NAMESERVERS`` configures, exactly as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from postroom.dkim import dns_record, generate_private_key, sign
from postroom.settings import Settings
from smtp_in.authentication import AuthenticationResults, authenticate, make_resolver
from tests.support.dnsmasq import Dnsmasq, DnsmasqFailed, free_port
from tests.support.services import require

AUTHSERV = "mx.postroom.test"
GOOD_IP = "127.0.0.1"
OTHER_IP = "192.0.2.9"


@dataclass
class Zone:
    dnsmasq: Dnsmasq
    key: str

    def settings(self) -> Settings:
        return Settings(dns_nameservers=self.dnsmasq.nameserver)


@pytest.fixture(scope="module")
def zone() -> Iterator[Zone]:
    try:
        server = Dnsmasq()
    except DnsmasqFailed as exc:
        require(False, str(exc))
        raise
    key = generate_private_key()
    record = dns_record("remote.test", "sel", key)
    hyphen = dns_record("my-domain.test", "sel", key)
    records = [
        "--txt-record=remote.test,v=spf1 ip4:127.0.0.1 -all",
        "--txt-record=_dmarc.remote.test,v=DMARC1; p=reject; sp=quarantine",
        f"--txt-record={record.name},{','.join(record.strings)}",
        "--txt-record=my-domain.test,v=spf1 -all",
        "--txt-record=_dmarc.my-domain.test,v=DMARC1; p=reject; adkim=s",
        f"--txt-record={hyphen.name},{','.join(hyphen.strings)}",
        "--txt-record=_dmarc.lenient.test,v=DMARC1; p=none",
    ]
    with server:
        server.start(records, "remote.test", "TXT")
        yield Zone(server, key)


def _message(sender: str, body: str = "Noon at the usual place?\r\n") -> bytes:
    return (
        f"From: Ann <{sender}>\r\n"
        "To: bob@example.test\r\n"
        "Subject: Lunch?\r\n"
        "Date: Mon, 02 Jun 2025 12:00:00 +0000\r\n"
        "Message-ID: <1@remote.test>\r\n"
        "\r\n"
        f"{body}"
    ).encode()


def _check(
    zone: Zone, raw: bytes, *, ip: str = GOOD_IP, mail_from: str, helo: str = "mx.remote.test"
) -> AuthenticationResults:
    return authenticate(
        raw,
        ip=ip,
        helo=helo,
        mail_from=mail_from,
        authserv_id=AUTHSERV,
        resolver=make_resolver(zone.settings()),
    )


def test_signed_mail_from_an_authorized_host_passes_all_three(zone: Zone) -> None:
    raw = sign(
        _message("ann@remote.test"), domain="remote.test", selector="sel", private_key_pem=zone.key
    )

    results = _check(zone, raw, mail_from="ann@remote.test")

    assert (results.spf, results.dkim, results.dmarc.result) == ("pass", "pass", "pass")
    assert results.dkim_domains == ("remote.test",)
    assert not results.dmarc_says_junk
    header = results.header
    assert header.startswith(f"Authentication-Results: {AUTHSERV};\r\n\t")
    assert header.endswith("\r\n")
    assert "spf=pass" in header and "smtp.mailfrom=ann@remote.test" in header
    assert "dkim=pass header.d=remote.test header.s=sel" in header
    assert "dmarc=pass header.from=remote.test policy.dmarc=reject" in header
    assert all(len(line) <= 998 for line in header.split("\r\n"))


def test_a_forged_from_under_p_reject_fails_dmarc_and_says_junk(zone: Zone) -> None:
    raw = _message("boss@remote.test")

    results = _check(zone, raw, ip=OTHER_IP, mail_from="spoof@elsewhere.test")

    assert results.spf == "none"
    assert results.dkim == "none"
    assert results.dmarc.result == "fail"
    assert results.dmarc.policy == "reject"
    assert results.dmarc_says_junk
    assert "dmarc=fail header.from=remote.test policy.dmarc=reject" in results.header


def test_spf_fails_for_a_host_the_domain_does_not_list(zone: Zone) -> None:
    results = _check(zone, _message("ann@remote.test"), ip=OTHER_IP, mail_from="ann@remote.test")
    assert results.spf == "fail"
    assert results.dmarc_says_junk


def test_a_body_changed_after_signing_fails_dkim(zone: Zone) -> None:
    raw = sign(
        _message("ann@remote.test"), domain="remote.test", selector="sel", private_key_pem=zone.key
    )
    tampered = raw.replace(b"Noon at the usual place?", b"Send the wire transfer now")

    results = _check(zone, tampered, ip=OTHER_IP, mail_from="ann@remote.test")

    assert results.dkim == "fail"
    assert "dkim=fail header.d=remote.test" in results.header
    assert results.dmarc.result == "fail"


def test_a_subdomain_aligns_relaxed_and_takes_the_sp_policy(zone: Zone) -> None:
    signed = sign(
        _message("news@news.remote.test"),
        domain="remote.test",
        selector="sel",
        private_key_pem=zone.key,
    )
    assert _check(zone, signed, ip=OTHER_IP, mail_from="x@elsewhere.test").dmarc.result == "pass"

    forged = _check(zone, _message("news@news.remote.test"), ip=OTHER_IP, mail_from="")
    assert (forged.dmarc.result, forged.dmarc.policy) == ("fail", "quarantine")
    assert forged.dmarc_says_junk


def test_hyphenated_domains_and_strict_alignment(zone: Zone) -> None:
    exact = sign(
        _message("ann@my-domain.test"),
        domain="my-domain.test",
        selector="sel",
        private_key_pem=zone.key,
    )
    results = _check(zone, exact, ip=OTHER_IP, mail_from="ann@my-domain.test")
    assert results.spf == "fail"
    assert (results.dkim, results.dmarc.result) == ("pass", "pass")
    assert "header.from=my-domain.test" in results.header

    # adkim=s: a signature of the parent domain does not align with a subdomain's From
    sub = sign(
        _message("ann@sub.my-domain.test"),
        domain="my-domain.test",
        selector="sel",
        private_key_pem=zone.key,
    )
    assert _check(zone, sub, ip=OTHER_IP, mail_from="").dmarc.result == "fail"


def test_p_none_fails_without_asking_for_junk(zone: Zone) -> None:
    results = _check(zone, _message("ann@lenient.test"), ip=OTHER_IP, mail_from="")
    assert (results.dmarc.result, results.dmarc.policy) == ("fail", "none")
    assert not results.dmarc_says_junk


def test_a_second_from_address_cannot_hide_a_failing_one(zone: Zone) -> None:
    raw = _message("ann@lenient.test").replace(
        b"From: Ann <ann@lenient.test>", b"From: Ann <ann@lenient.test>, Boss <boss@remote.test>"
    )
    results = _check(zone, raw, ip=OTHER_IP, mail_from="")
    assert (results.dmarc.result, results.dmarc.policy) == ("fail", "reject")


def test_domains_without_records_are_none_not_failures(zone: Zone) -> None:
    results = _check(zone, _message("zed@unknown.test"), mail_from="zed@unknown.test")
    assert (results.spf, results.dkim, results.dmarc.result) == ("none", "none", "none")
    assert not results.dmarc_says_junk


def test_a_dead_dns_server_gives_temperror_and_files_normally() -> None:
    settings = Settings(dns_nameservers=f"127.0.0.1:{free_port()}")  # nothing listens there
    resolver = make_resolver(settings)
    resolver.lifetime = 0.3
    raw = _message("boss@remote.test")

    results = authenticate(
        raw,
        ip=OTHER_IP,
        helo="x.test",
        mail_from="boss@remote.test",
        authserv_id=AUTHSERV,
        resolver=resolver,
    )

    assert results.spf == "temperror"
    assert results.dmarc.result == "temperror"
    assert not results.dmarc_says_junk


def test_garbage_gets_results_not_an_exception(zone: Zone) -> None:
    results = _check(zone, bytes(range(256)) * 50, mail_from="zed@unknown.test\r\nX-Evil: 1")
    assert "\r\nX-Evil" not in results.header
    assert results.header.startswith("Authentication-Results: ")
