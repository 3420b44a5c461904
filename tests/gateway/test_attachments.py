"""Attachment download: the bytes, their type, a safe download name, and no sniffing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import pytest_asyncio

from tests.support.gateway_api import Api, api_for, compose

pytestmark = pytest.mark.asyncio(loop_scope="module")

PDF = b"%PDF-1.4 not really"
HTML = b"<script>alert(document.cookie)</script>"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with api_for(database_url, Path(tmp_path_factory.mktemp("attachments"))) as api:
        yield api


async def test_download_each_attachment_safely(api: Api) -> None:
    ann = await api.user("ann@files.test")
    message = await api.deliver(
        ann.user,
        compose(
            "files",
            attachments=[
                ("report.pdf", "application/pdf", PDF),
                ('../../etc/"pass\\wd".html', "text/html", HTML),
                ("Überweisung März.txt", "text/plain", "grüße".encode()),
            ],
        ),
    )
    listed = (await ann.get(f"/messages/{message.id}")).json()["attachments"]
    assert [a["size"] for a in listed] == [len(PDF), len(HTML), len("grüße".encode())]
    pdf, html, umlaut = [
        await ann.get(f"/messages/{message.id}/attachments/{a['id']}") for a in listed
    ]
    for answer in (pdf, html, umlaut):
        assert answer.status_code == 200
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-disposition"].startswith("attachment;")

    assert pdf.content == PDF
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == 'attachment; filename="report.pdf"'

    assert html.content == HTML
    assert html.headers["content-type"].startswith("text/html")
    disposition = html.headers["content-disposition"]
    assert disposition == 'attachment; filename="wd_.html"'  # path parts dropped
    assert "sandbox" in html.headers["content-security-policy"]

    assert umlaut.content == "grüße".encode()
    assert umlaut.headers["content-type"].startswith("text/plain")
    ascii_part, star_part = umlaut.headers["content-disposition"].split("; filename*=")
    assert ascii_part == 'attachment; filename="_berweisung M_rz.txt"'
    assert star_part.startswith("UTF-8''")
    assert unquote(star_part.removeprefix("UTF-8''")) == "Überweisung März.txt"


async def test_an_attachment_needs_its_own_message(api: Api) -> None:
    bob = await api.user("bob@files.test")
    with_file = await api.deliver(
        bob.user, compose("one", attachments=[("a.bin", "application/octet-stream", b"\x00\x01")])
    )
    without = await api.deliver(bob.user, compose("two"))
    attachment = (await bob.get(f"/messages/{with_file.id}")).json()["attachments"][0]
    wrong = await bob.get(f"/messages/{without.id}/attachments/{attachment['id']}")
    assert wrong.status_code == 404
    assert (await bob.get(f"/messages/{with_file.id}/attachments/nope")).status_code == 404
    ok = await bob.get(f"/messages/{with_file.id}/attachments/{attachment['id']}")
    assert (ok.content, ok.headers["content-type"]) == (b"\x00\x01", "application/octet-stream")
