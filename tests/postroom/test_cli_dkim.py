"""DKIM on the command line (issue 4, point 9): ``domain add`` makes a key and says what to
publish; ``domain dkim`` says it again.

What the admin is told to publish must be the public half of the key smtp-out signs with, so
the printed record is checked against the key in the database, and a message signed with that
key must verify against the printed record.
"""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from postroom.dkim import sign
from storage.db.models import Domain
from storage.registry import open_database
from tests.support.db import snapshot
from tests.support.platform import Platform

PUBLISH = "publish this DNS TXT record so receivers can verify our DKIM signatures:"
ZONE_LINE = re.compile(r'(?P<name>\S+)\. IN TXT (?P<strings>(?:"[^"]*" ?)+)')


@pytest.fixture
def cli(own_database_url: str, tmp_path: Path) -> Platform:
    platform = Platform(tmp_path, own_database_url)
    result = platform.cli("migrate")
    assert result.returncode == 0, result.stderr
    return platform


def _stored(database_url: str, name: str) -> Domain | None:
    async def read() -> Domain | None:
        db = open_database(database_url)
        try:
            async with db.session() as session:
                domain: Domain | None = await session.scalar(
                    select(Domain).where(Domain.name == name)
                )
                return domain
        finally:
            await db.close()

    return asyncio.run(read())


def _insert_domain_without_key(database_url: str, name: str) -> None:
    """A domain as hosted before DKIM existed."""

    async def write() -> None:
        db = open_database(database_url)
        try:
            async with db.session() as session, session.begin():
                session.add(Domain(name=name))
        finally:
            await db.close()

    asyncio.run(write())


def _record(lines: list[str]) -> tuple[str, str]:
    """The record name and value from the two lines the CLI prints about it."""
    assert lines[0] == PUBLISH
    match = ZONE_LINE.fullmatch(lines[1])
    assert match is not None, lines[1]
    strings = re.findall(r'"([^"]*)"', match["strings"])
    assert all(len(s) <= 255 for s in strings), "a DNS character-string holds 255 octets"
    return match["name"], "".join(strings)


def test_domain_add_prints_the_record_of_the_key_it_stored(cli: Platform) -> None:
    result = cli.cli("domain", "add", "Example.TEST")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0] == "domain example.test added"
    name, value = _record(lines[1:])
    assert name == "postroom._domainkey.example.test"
    assert value.startswith("v=DKIM1; k=rsa; p=")

    domain = _stored(cli.database_url, "example.test")
    assert domain is not None and domain.dkim_private_key is not None
    assert domain.dkim_selector == "postroom"
    private = serialization.load_pem_private_key(domain.dkim_private_key.encode(), password=None)
    public = serialization.load_der_public_key(base64.b64decode(value.partition("p=")[2]))
    assert isinstance(private, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == private.public_key().public_numbers()

    signed = sign(
        b"From: ann@example.test\r\nTo: dave@remote.test\r\nSubject: hi\r\n\r\nhello\r\n",
        domain="example.test",
        selector=domain.dkim_selector,
        private_key_pem=domain.dkim_private_key,
    )

    def lookup(query: bytes, timeout: float = 5) -> bytes | None:
        return value.encode() if query.decode().rstrip(".") == name else None

    assert dkim.verify(signed, dnsfunc=lookup)


def test_domain_dkim_prints_the_same_record_again(cli: Platform) -> None:
    added = cli.cli("domain", "add", "example.test")
    assert added.returncode == 0, added.stderr

    again = cli.cli("domain", "dkim", "EXAMPLE.test")

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == added.stdout.splitlines()[1:]


def test_the_selector_comes_from_the_settings(cli: Platform) -> None:
    cli.env["POSTROOM_DKIM_SELECTOR"] = "Mail2025"

    result = cli.cli("domain", "add", "example.test")

    assert result.returncode == 0, result.stderr
    name, _ = _record(result.stdout.splitlines()[1:])
    assert name == "mail2025._domainkey.example.test"
    domain = _stored(cli.database_url, "example.test")
    assert domain is not None and domain.dkim_selector == "mail2025"


def test_a_bad_selector_is_one_line_exit_2_and_adds_nothing(cli: Platform) -> None:
    cli.env["POSTROOM_DKIM_SELECTOR"] = "not a label"
    before = snapshot(cli.database_url)

    result = cli.cli("domain", "add", "example.test")

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "postroom: error: 'not a label' is not a valid DKIM selector "
        "(letters, digits and hyphens, like 'postroom' or 'mail2025')"
    ]
    assert snapshot(cli.database_url) == before


def test_domain_dkim_of_an_unknown_domain_is_one_line_exit_2(cli: Platform) -> None:
    result = cli.cli("domain", "dkim", "unknown.test")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "postroom: error: domain unknown.test is not hosted here; see `postroom domain list`"
    ]


def test_domain_dkim_of_a_domain_without_a_key_says_so(cli: Platform) -> None:
    _insert_domain_without_key(cli.database_url, "old.test")

    result = cli.cli("domain", "dkim", "old.test")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "postroom: error: domain old.test has no DKIM key; its mail goes out unsigned"
    ]
