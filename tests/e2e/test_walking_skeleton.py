"""The walking skeleton over real protocols (issue 2, point 7), on SQLite and PostgreSQL."""

from __future__ import annotations

import smtplib
import uuid

import pytest

from tests.support.platform import Platform

pytestmark = pytest.mark.e2e


def _mail(sender: str, rcpt: str, subject: str, body: str = "Hello there.\r\n") -> bytes:
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@remote.test>\r\n\r\n{body}"
    ).encode()


def test_smtp_to_local_user_lands_in_inbox_with_exact_bytes(platform: Platform) -> None:
    subject = f"walking skeleton {uuid.uuid4().hex[:8]}"
    raw = _mail("zed@remote.test", "bob@example.test", subject, "First line.\r\nSecond line.\r\n")
    with platform.smtp() as client:
        code, reply = client.ehlo("client.remote.test")
        assert code == 250
        client.mail("zed@remote.test")
        assert client.rcpt("bob@example.test")[0] == 250
        code, reply = client.data(raw)
    assert code == 250, reply
    assert reply.startswith(b"2.0.0")

    token = platform.token("bob@example.test")
    ours = platform.wait_for(token, "inbox", subject)
    assert len(ours) == 1
    item = ours[0]
    assert item["from"] == {"name": "", "address": "zed@remote.test"}
    assert item["snippet"] == "First line. Second line."
    assert item["seen"] is False

    with platform.api(token) as api:
        detail = api.get(f"/messages/{item['id']}").json()
        assert detail["text"] == "First line.\nSecond line.\n"
        assert detail["html"] == ""
        raw_response = api.get(f"/messages/{item['id']}/raw")
    assert raw_response.status_code == 200
    assert raw_response.headers["content-type"] == "message/rfc822"
    stored = raw_response.content
    received, _, rest = stored.partition(b"\r\nFrom: ")
    assert received.startswith(b"Received: from client.remote.test")
    assert b"by mx.postroom.test (postroom) with ESMTP id" in received
    assert b"From: " + rest == raw


def test_unknown_local_user_gets_550_5_1_1(platform: Platform) -> None:
    with platform.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        code, reply = client.rcpt("nobody@example.test")
    assert code == 550
    assert reply.startswith(b"5.1.1")


def test_foreign_domain_without_auth_gets_554_5_7_1(platform: Platform) -> None:
    with platform.smtp() as client:
        client.ehlo("client.remote.test")
        client.mail("zed@remote.test")
        code, reply = client.rcpt("victim@elsewhere.test")
        assert code == 554
        assert reply.startswith(b"5.7.1")
        # and a DATA with no accepted recipient stores nothing
        with pytest.raises(smtplib.SMTPException):
            client.data(_mail("zed@remote.test", "victim@elsewhere.test", "relay?"))


def test_token_endpoint_follows_the_oauth2_password_flow(platform: Platform) -> None:
    with platform.api() as api:
        good = api.post(
            "/auth/token",
            data={"username": "ann@example.test", "password": "correct-horse-battery"},
        )
        wrong = api.post(
            "/auth/token", data={"username": "ann@example.test", "password": "nope-nope"}
        )
        nobody = api.post(
            "/auth/token", data={"username": "who@example.test", "password": "x" * 10}
        )
        unauthenticated = api.get("/mailboxes")
    assert good.status_code == 200
    body = good.json()
    assert body["token_type"] == "bearer"
    assert len(body["access_token"]) > 30
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "wrong address or password"
    assert nobody.status_code == 401
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == "Bearer"


def test_logout_revokes_the_token(platform: Platform) -> None:
    token = platform.token("ann@example.test")
    with platform.api(token) as api:
        assert api.get("/mailboxes").status_code == 200
        assert api.post("/auth/logout").status_code == 204
        assert api.get("/mailboxes").status_code == 401


def test_mailboxes_list_counts(platform: Platform) -> None:
    token = platform.token("ann@example.test")
    with platform.api(token) as api:
        before = {m["role"]: m for m in api.get("/mailboxes").json()["items"]}
    assert set(before) == {"inbox", "sent", "drafts", "trash", "junk", "archive"}
    subject = f"count {uuid.uuid4().hex[:6]}"
    with platform.smtp() as client:
        for _ in range(2):
            client.sendmail(
                "zed@remote.test",
                ["ann@example.test"],
                _mail("zed@remote.test", "ann@example.test", subject),
            )
    platform.wait_for(token, "inbox", subject, 2)
    with platform.api(token) as api:
        after = {m["role"]: m for m in api.get("/mailboxes").json()["items"]}
    assert after["inbox"]["total"] == before["inbox"]["total"] + 2
    assert after["inbox"]["unread"] == before["inbox"]["unread"] + 2
    assert after["trash"]["total"] == 0


def test_messages_are_listed_newest_first_with_a_working_cursor(platform: Platform) -> None:
    token = platform.token("bob@example.test")
    tag = uuid.uuid4().hex[:6]
    with platform.smtp() as client:
        for n in range(5):
            client.sendmail(
                "zed@remote.test",
                ["bob@example.test"],
                _mail("zed@remote.test", "bob@example.test", f"{tag} #{n}"),
            )
    for n in range(5):
        platform.wait_for(token, "inbox", f"{tag} #{n}")
    items = platform.messages(token, "inbox")
    ours = [m["subject"] for m in items if m["subject"].startswith(tag)]
    assert ours == [f"{tag} #{n}" for n in reversed(range(5))]

    seen: list[str] = []
    cursor = None
    with platform.api(token) as api:
        while True:
            params = {"mailbox": "inbox", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = api.get("/messages", params=params).json()
            assert len(page["items"]) <= 2
            seen.extend(m["id"] for m in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == [m["id"] for m in items]
    assert len(set(seen)) == len(seen)


def test_another_users_message_is_404_everywhere(platform: Platform) -> None:
    with platform.smtp() as client:
        client.sendmail(
            "zed@remote.test",
            ["bob@example.test"],
            _mail("zed@remote.test", "bob@example.test", "private to bob"),
        )
    bob = platform.token("bob@example.test")
    ann = platform.token("ann@example.test")
    (message,) = platform.wait_for(bob, "inbox", "private to bob")
    with platform.api(ann) as api:
        for path in (f"/messages/{message['id']}", f"/messages/{message['id']}/raw"):
            response = api.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        assert api.get("/messages", params={"mailbox": message["mailbox_id"]}).status_code == 404


def test_send_between_local_users_lands_in_inbox_and_sent(platform: Platform) -> None:
    ann = platform.token("ann@example.test")
    bob = platform.token("bob@example.test")
    subject = f"lunch {uuid.uuid4().hex[:6]}"
    with platform.api(ann) as api:
        response = api.post(
            "/send",
            json={
                "to": ["bob@example.test"],
                "cc": [],
                "bcc": [],
                "subject": subject,
                "text": "Noon?",
                "html": "<p>Noon?</p><script>alert(1)</script>",
            },
        )
    assert response.status_code == 202, response.text
    assert len(response.json()["id"]) == 32

    inbox = platform.wait_for(bob, "inbox", subject)
    assert len(inbox) == 1
    assert inbox[0]["from"]["address"] == "ann@example.test"
    sent = platform.wait_for(ann, "sent", subject)
    assert len(sent) == 1
    assert sent[0]["seen"] is True
    assert sent[0]["id"] == response.json()["message_id"]
    with platform.api(bob) as api:
        detail = api.get(f"/messages/{inbox[0]['id']}").json()
    assert detail["text"].strip() == "Noon?"
    assert detail["html"].strip() == "<p>Noon?</p>"


def test_bcc_is_delivered_but_not_disclosed(platform: Platform) -> None:
    ann = platform.token("ann@example.test")
    bob = platform.token("bob@example.test")
    subject = f"secret cc {uuid.uuid4().hex[:6]}"
    with platform.api(ann) as api:
        response = api.post(
            "/send",
            json={
                "to": ["ann@example.test"],
                "bcc": ["bob@example.test"],
                "subject": subject,
                "text": "hi",
            },
        )
    assert response.status_code == 202, response.text
    (message,) = platform.wait_for(bob, "inbox", subject)
    with platform.api(bob) as api:
        raw = api.get(f"/messages/{message['id']}/raw").content
    assert b"bob@example.test" not in raw
    with platform.api(ann) as api:
        sent = next(
            m
            for m in api.get("/messages", params={"mailbox": "sent"}).json()["items"]
            if m["subject"] == subject
        )
        assert api.get(f"/messages/{sent['id']}").json()["bcc"] == ["bob@example.test"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"to": ["not-an-address"], "text": "x"}, "to[0]"),
        ({"to": ["bob@example.test\r\nBcc: evil@remote.test"], "text": "x"}, "to[0]"),
        (
            {"to": ["bob@example.test"], "subject": "hi\r\nBcc: evil@remote.test", "text": "x"},
            "subject",
        ),
        ({"to": ["nobody@example.test"], "text": "x"}, "to[0]"),
        ({"to": [], "text": "x"}, "to"),
        ({"to": "bob@example.test", "text": "x"}, "to"),
    ],
)
def test_bad_send_gets_422_naming_the_field_and_sends_nothing(
    platform: Platform, payload: dict[str, object], field: str
) -> None:
    ann = platform.token("ann@example.test")
    with platform.api(ann) as api:
        sent_before = api.get("/mailboxes").json()["items"]
        response = api.post("/send", json=payload)
        sent_after = api.get("/mailboxes").json()["items"]
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == field
    assert error["message"]
    assert sent_after == sent_before
