"""The content check Protocol (issue 3, point 10): the no-op default and the real spamd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import pytest

from postroom.checks import ContentCheck, Verdict
from postroom.checks.noop import NoopCheck
from postroom.checks.registry import open_content_check
from postroom.checks.spamd import DEFAULT_PORT, SpamdCheck
from postroom.errors import ConfigurationError, ContentCheckUnavailable
from postroom.settings import Settings
from tests.support.spamd import free_tcp_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(text: str, subject: str = "Lunch on Friday") -> bytes:
    """A message as a mail client would write it (so only its body decides the verdict)."""
    mail = EmailMessage()
    mail["From"] = "Alice Example <alice@postroom.test>"
    mail["To"] = "Dave Remote <dave@remote.test>"
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=True)
    mail["Message-ID"] = make_msgid(domain="postroom.test")
    mail.set_content(text)
    return mail.as_bytes().replace(b"\n", b"\r\n")


ORDINARY = message(
    "Hi Dave,\n\nshall we have lunch on Friday at noon, at the usual place?\n"
    "I can book a table for three if Carol comes too.\n\nAlice\n"
)
SPAM = message(f"This is the GTUBE test message.\n\n{GTUBE}\n", subject="Test spam mail (GTUBE)")


def settings(url: str | None) -> Settings:
    return Settings(content_check_url=url)


@pytest.fixture
async def spamd(spamd_url: str) -> AsyncIterator[ContentCheck]:
    check = open_content_check(settings(spamd_url))
    try:
        yield check
    finally:
        await check.close()


async def test_gtube_is_spam_with_its_score(spamd: ContentCheck) -> None:
    verdict = await spamd.check(SPAM)

    assert verdict.spam and not verdict.clean
    assert not verdict.infected
    assert verdict.score is not None and verdict.threshold is not None
    assert verdict.score >= verdict.threshold
    assert verdict.score >= 1000.0  # GTUBE alone scores 1000
    assert "GTUBE" in verdict.rules
    assert verdict.reason.startswith(
        f"spam (score {verdict.score:.1f}, threshold {verdict.threshold:.1f}; rules "
    )
    assert "GTUBE" in verdict.reason


async def test_an_ordinary_message_is_clean_with_a_score(spamd: ContentCheck) -> None:
    verdict = await spamd.check(ORDINARY)

    assert not verdict.spam and verdict.clean
    assert verdict.score is not None and verdict.threshold is not None
    assert verdict.score < verdict.threshold
    assert verdict.reason == f"clean (score {verdict.score:.1f}, threshold {verdict.threshold:.1f})"


async def test_concurrent_checks_each_get_their_own_verdict(spamd: ContentCheck) -> None:
    verdicts = await asyncio.gather(*(spamd.check(m) for m in (SPAM, ORDINARY, SPAM, ORDINARY)))

    assert [v.spam for v in verdicts] == [True, False, True, False]


async def test_a_large_message_is_checked_by_its_beginning(spamd_url: str) -> None:
    check = SpamdCheck.from_url(f"{spamd_url}?max_size=65536")
    padding = "".join(f"line {n} of a long attachment-like body\n" for n in range(100_000))
    big = message(f"{GTUBE}\n\n{padding}")
    assert len(big) > 1024 * 1024

    verdict = await check.check(big)

    assert verdict.spam and "GTUBE" in verdict.rules


async def test_spamd_answers_ping(spamd_url: str) -> None:
    await SpamdCheck.from_url(spamd_url).ping()


async def test_spamd_down_is_unavailable_not_clean() -> None:
    check = SpamdCheck("127.0.0.1", free_tcp_port())  # nothing listens there

    with pytest.raises(ContentCheckUnavailable, match="cannot be reached"):
        await check.check(ORDINARY)


Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(talk: Talk) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def test_a_spamd_that_does_not_answer_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        await asyncio.sleep(30)

    server, port = await _serve(silent)
    try:
        check = SpamdCheck("127.0.0.1", port, timeout=0.5)
        with pytest.raises(ContentCheckUnavailable, match=r"did not answer within 0\.5 s"):
            await check.check(ORDINARY)
    finally:
        server.close()


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"SPAMD/1.0 76 Bad header line: (Content-length)\r\n", "could not check: 76 Bad header"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not SPAMD protocol"),
        (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", "no Spam header"),
        (b"SPAMD/1.1 0 EX_OK\r\nSpam: maybe\r\n\r\n", "Spam header"),
        (b"", "not SPAMD protocol"),
    ],
)
async def test_a_garbled_or_refusing_answer_is_unavailable(answer: bytes, match: str) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(answer)
        await writer.drain()
        writer.close()

    server, port = await _serve(reply)
    try:
        with pytest.raises(ContentCheckUnavailable, match=match):
            await SpamdCheck("127.0.0.1", port).check(ORDINARY)
    finally:
        server.close()


async def test_no_url_means_the_noop_check() -> None:
    check = open_content_check(settings(None))

    assert isinstance(check, NoopCheck)
    verdict = await check.check(SPAM)
    assert verdict == Verdict(
        spam=False, score=None, threshold=None, reason="not checked (no content check configured)"
    )
    assert verdict.clean


def test_spamd_url_parts() -> None:
    check = open_content_check(settings("spamd://spam.internal"))
    assert isinstance(check, SpamdCheck)
    assert (check.host, check.port, check.timeout) == ("spam.internal", DEFAULT_PORT, 30.0)

    check = SpamdCheck.from_url("spamd://[::1]:7830?timeout=5&max_size=1000")
    assert (check.address, check.timeout, check.max_size) == ("[::1]:7830", 5.0, 1000)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("clamd://127.0.0.1:3310", "unknown scheme 'clamd'.*none://, spamd://"),
        ("127.0.0.1:783", "unknown scheme ''"),
        ("spamd://", "not of the form spamd://host:port"),
        ("spamd://host:notaport", "invalid port"),
        ("spamd://host:783?retries=3", "unknown option 'retries'"),
        ("spamd://host:783?timeout=soon", "is not a number"),
        ("spamd://host:783?max_size=0", "must be positive"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        open_content_check(settings(url))
