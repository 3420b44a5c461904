"""CPython's email test messages, sent over SMTP to a running postroom (issue 3, point 13),
and the inbound checks seen through the API (points 9 and 10) on the same platform.

Every ``msg_*.txt`` of CPython's email test data (written by people who were trying to break
the email package) is sent with smtplib to one running platform. Each must be accepted with a
2xx or refused with a 4xx/5xx carrying an enhanced status code; no processor may crash on any
of them; and each accepted one must come back from ``GET /api/v1/messages/{id}/raw``
byte-identical to what was sent, once our own fields are taken off the top: the ``Received:``
line the SMTP server adds, and the ``Authentication-Results:`` and ``X-Spam-*`` fields the
processor adds below it.

"What was sent" means the bytes on the wire, not the file: some files end lines with a bare LF,
and an SMTP client must send CRLF (smtplib converts them; our server refuses bare LF in DATA as
SMTP smuggling). So each file is CRLF-normalised before sending, and smtplib adds a final CRLF
to a message that lacks one; those normalised bytes are what must come back.
"""

from __future__ import annotations

import re
import sysconfig
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dnsmasq import Dnsmasq, DnsmasqFailed
from tests.support.platform import Platform
from tests.support.services import postgres_database, require

pytestmark = pytest.mark.e2e

CORPUS_DIRS = [
    # this interpreter's own test suite (a pyenv build installs it; CI runs on the same one)
    Path(sysconfig.get_path("stdlib"), "test", "test_email", "data"),
    # Debian's package libpython3.11-testsuite
    Path("/usr/lib/python3.11/test/test_email/data"),
]
WIRE_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
ENHANCED = re.compile(rb"^[245]\.\d{1,3}\.\d{1,3} ")
AUTHSERV = b"mx.postroom.test"


def corpus() -> list[Path]:
    for folder in CORPUS_DIRS:
        files = sorted(folder.glob("msg_*.txt"))
        if files:
            return files
    return []


def on_the_wire(raw: bytes) -> bytes:
    """What smtplib puts on the wire for ``raw`` (before dot-stuffing, which the server undoes)."""
    wire = WIRE_LINE_ENDINGS.sub(b"\r\n", raw)
    return wire if wire.endswith(b"\r\n") else wire + b"\r\n"


def split_our_fields(stored: bytes) -> tuple[list[bytes], bytes]:
    """The fields we put on top of ``stored`` (by name) and the message below them.

    Ours are the SMTP server's Received: field, then the processor's Authentication-Results:
    and X-Spam-Status: / X-Spam-Flag: fields, each with its continuation lines.
    """
    lines = stored.split(b"\r\n")
    assert lines[0].startswith(b"Received: from "), lines[0]
    names: list[bytes] = []
    index = 0
    for name in (b"Received", b"Authentication-Results", b"X-Spam-Status", b"X-Spam-Flag"):
        if not lines[index].startswith(name + b": "):
            continue
        names.append(name)
        index += 1
        while lines[index][:1] in (b" ", b"\t"):
            index += 1
    return names, b"\r\n".join(lines[index:])


@pytest.fixture(scope="module")
def files() -> list[Path]:
    found = corpus()
    require(bool(found), f"no CPython email test data in {', '.join(map(str, CORPUS_DIRS))}")
    return found


@pytest.fixture(scope="module")
def platform(
    tmp_path_factory: pytest.TempPathFactory, files: list[Path], spamd_url: str
) -> Iterator[Platform]:
    """One running postroom with spamd as its content check, for the corpus and the checks.

    Its DNS knows remote.test (SPF for 127.0.0.1, DMARC p=reject) and answers NXDOMAIN for
    every other name, so no test asks the Internet.

    On PostgreSQL only, the stricter of the two databases (no NUL in text, sized columns);
    hostile content is stored on both by ``test_mime_limits.py``.
    """
    try:
        dnsmasq = Dnsmasq()
    except DnsmasqFailed as exc:
        require(False, str(exc))
        raise
    records = [
        "--local=/#/",
        "--txt-record=remote.test,v=spf1 ip4:127.0.0.1 -all",
        "--txt-record=_dmarc.remote.test,v=DMARC1; p=reject",
    ]
    with dnsmasq, postgres_database() as database_url:
        dnsmasq.start(records, "remote.test", "TXT")
        running = Platform(
            tmp_path_factory.mktemp("corpus"),
            database_url,
            {
                "POSTROOM_DNS_NAMESERVERS": dnsmasq.nameserver,
                "POSTROOM_CONTENT_CHECK_URL": spamd_url,
            },
        )
        running.setup("example.test", "bob@example.test")
        running.start()
        try:
            yield running
        finally:
            running.stop()


def _filed(platform: Platform, token: str) -> list[dict[str, Any]]:
    """Bob's Inbox and Junk: a corpus message may well look like spam."""
    return platform.messages(token, "inbox") + platform.messages(token, "junk")


def _send(platform: Platform, mail_from: str, raw: bytes) -> None:
    with platform.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail(mail_from)
        assert client.rcpt("bob@example.test")[0] == 250
        code, reply = client.data(raw)
    assert code == 250, reply


def _mail(sender: str, subject: str, body: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
        f"Date: Mon, 02 Jun 2025 12:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}@x>\r\n"
        f"\r\n{body}"
    ).encode()


def test_gtube_and_a_dmarc_reject_failure_go_to_junk_as_the_api_shows(
    platform: Platform,
) -> None:
    gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
    _send(platform, "ann@remote.test", _mail("ann@remote.test", "gtube e2e", f"{gtube}\r\n"))
    _send(platform, "x@elsewhere.test", _mail("boss@remote.test", "forged e2e", "Pay now.\r\n"))
    _send(platform, "ann@remote.test", _mail("ann@remote.test", "genuine e2e", "Lunch?\r\n"))

    token = platform.token("bob@example.test")
    [spam] = platform.wait_for(token, "junk", "gtube e2e", timeout=60)
    [forged] = platform.wait_for(token, "junk", "forged e2e", timeout=60)
    [genuine] = platform.wait_for(token, "inbox", "genuine e2e", timeout=60)
    with platform.api(token) as api:
        raws = {
            name: api.get(f"/messages/{item['id']}/raw").content
            for name, item in (("spam", spam), ("forged", forged), ("genuine", genuine))
        }
    assert b"\r\nX-Spam-Status: Yes, score=10" in raws["spam"]
    assert b"GTUBE" in raws["spam"] and b"\r\nX-Spam-Flag: YES\r\n" in raws["spam"]
    assert b"spf=pass" in raws["spam"]
    assert b"dmarc=fail header.from=remote.test policy.dmarc=reject" in raws["forged"]
    assert b"dmarc=pass header.from=remote.test" in raws["genuine"]
    assert b"X-Spam-Status: No, score=" in raws["genuine"]


def test_every_corpus_message_is_accepted_or_refused_and_comes_back_intact(
    platform: Platform, files: list[Path]
) -> None:
    token = platform.token("bob@example.test")
    earlier = {m["id"] for m in _filed(platform, token)}
    sent: Counter[bytes] = Counter()
    refused: dict[str, tuple[int, bytes]] = {}
    with platform.smtp() as client:
        client.ehlo("client.remote.test")
        for path in files:
            wire = on_the_wire(path.read_bytes())
            client.mail("zed@remote.test")
            client.rcpt("bob@example.test")
            code, reply = client.data(wire)
            if code == 250:
                sent[wire] += 1
            else:
                refused[path.name] = (code, reply)
                client.rset()
    print(f"corpus: {len(files)} sent, {sum(sent.values())} accepted, refused: {refused}")
    for name, (code, reply) in refused.items():
        assert 400 <= code < 600 and ENHANCED.match(reply), f"{name}: {code} {reply!r}"
    assert sum(sent.values()) >= len(files) - len(refused) > 0

    expected = sum(sent.values())
    deadline = time.monotonic() + 120  # spamd scans one message at a time
    items = [m for m in _filed(platform, token) if m["id"] not in earlier]
    while len(items) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
        items = [m for m in _filed(platform, token) if m["id"] not in earlier]
    assert len(items) == expected, f"{len(items)} of {expected} accepted messages were filed"

    came_back: Counter[bytes] = Counter()
    with platform.api(token) as api:
        for item in items:
            response = api.get(f"/messages/{item['id']}/raw")
            assert response.status_code == 200
            names, message = split_our_fields(response.content)
            assert names[:3] == [b"Received", b"Authentication-Results", b"X-Spam-Status"]
            ours = response.content[: len(response.content) - len(message)]
            assert b"\r\nAuthentication-Results: " + AUTHSERV + b";" in ours
            came_back[message] += 1
    missing = sent - came_back
    assert not missing, [m[:200] for m in missing]
    assert came_back == sent

    log = platform.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:3000]
    assert platform.process is not None and platform.process.poll() is None
    with platform.smtp() as client:  # and it still takes mail
        assert client.noop()[0] == 250
