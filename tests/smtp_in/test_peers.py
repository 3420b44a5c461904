"""SMTP clients nobody here wrote, against the MX port (issue 3, point 14).

swaks (STARTTLS, PIPELINING) and Postfix's smtp-source (parallel sessions, several messages per
connection) must get their mail accepted, stored byte for byte after our ``Received:`` line.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from storage.db.models import InboundMessage
from storage.registry import Storage
from tests.support.services import require
from tests.support.smtp_server import InProcessSmtp, running_smtp

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"


@pytest.fixture(scope="module")
def mx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSmtp]:
    with running_smtp(tmp_path_factory.mktemp("peers"), "example.test", "bob@example.test") as s:
        yield s


def inbound_from(mx: InProcessSmtp, sender: str) -> list[tuple[InboundMessage, bytes]]:
    async def load(store: Storage) -> list[tuple[InboundMessage, bytes]]:
        async with store.db.session() as session:
            rows = (
                await session.scalars(
                    select(InboundMessage).where(InboundMessage.mail_from == sender)
                )
            ).all()
        return [(row, await store.blobs.get(row.blob_key)) for row in rows]

    return mx.call(load)


def test_swaks_delivers_over_starttls_with_pipelining(mx: InProcessSmtp) -> None:
    require(shutil.which("swaks") is not None, "swaks is not installed (apt-get install swaks)")
    sender = f"swaks-{uuid.uuid4().hex[:6]}@remote.test"
    result = subprocess.run(
        [
            "swaks", "--server", f"127.0.0.1:{mx.smtp_port}", "--helo", "client.remote.test",
            "--tls", "--pipeline",
            "--from", sender, "--to", "bob@example.test",
            "--header", "Subject: from swaks", "--body", "Hello from swaks.",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert " -> STARTTLS" in result.stdout and "TLS started" in result.stdout
    assert "<~  250 2.0.0 OK: queued as" in result.stdout  # "~": said over TLS
    [(row, raw)] = inbound_from(mx, sender)
    assert row.rcpt_to == ["bob@example.test"]
    assert raw.startswith(b"Received: from client.remote.test ([127.0.0.1])\r\n")
    assert b"with ESMTPS id" in raw.split(b"\r\n\r\n")[0]
    assert b"\r\nSubject: from swaks\r\n" in raw
    assert b"\r\n\r\nHello from swaks.\r\n" in raw


def test_smtp_source_parallel_sessions_all_get_stored(mx: InProcessSmtp) -> None:
    require(
        shutil.which(SMTP_SOURCE) is not None, "smtp-source is missing (apt-get install postfix)"
    )
    sender = f"source-{uuid.uuid4().hex[:6]}@remote.test"
    result = subprocess.run(
        [
            SMTP_SOURCE, "-s", "4", "-m", "24", "-d", "-l", "2048",
            "-M", "client.remote.test", "-f", sender, "-t", "bob@example.test",
            "-S", "from smtp-source", f"127.0.0.1:{mx.smtp_port}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    stored = inbound_from(mx, sender)
    assert len(stored) == 24
    for row, raw in stored:
        assert row.rcpt_to == ["bob@example.test"]
        assert b"Subject: from smtp-source\r\n" in raw
        assert len(raw.split(b"\r\n\r\n", 1)[1]) >= 2048


def test_smtp_source_cannot_relay_to_another_domain(mx: InProcessSmtp) -> None:
    require(
        shutil.which(SMTP_SOURCE) is not None, "smtp-source is missing (apt-get install postfix)"
    )
    sender = f"relay-{uuid.uuid4().hex[:6]}@remote.test"
    result = subprocess.run(
        [
            SMTP_SOURCE, "-m", "1", "-M", "client.remote.test", "-f", sender,
            "-t", "victim@elsewhere.test", f"127.0.0.1:{mx.smtp_port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "554 5.7.1" in result.stdout + result.stderr
    assert inbound_from(mx, sender) == []
