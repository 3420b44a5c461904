"""A generated mailbox corpus, written straight into the metadata tables in bulk.

Deterministic (seeded): pseudo-words drawn from a Zipf distribution after a head of common
English words, so a few words are in most messages and most are rare, as in real mail; body
lengths are log-normal (median ~90 words, a long tail to a few thousand); one message in 20 is
Korean, Japanese or Chinese; one in eight has attachments. Rows are built the way the
processor builds them (``search.documents.from_parsed`` for the index) but inserted in bulk,
not through SMTP, so 100 000 messages load in minutes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from sqlalchemy import insert, select

from postroom.ids import new_id
from postroom.message import ParsedAttachment, ParsedMessage
from search.documents import from_parsed
from storage.db.database import Database
from storage.db.models import (
    Attachment,
    Blob,
    Mailbox,
    Message,
    MessageContent,
    SearchDocument,
    Thread,
    User,
)
from storage.repositories.accounts import add_domain, add_user

__all__ = ["COMMON", "Corpus", "build_corpus", "load_corpus"]

COMMON = (
    "the to and of a in for is on that you this with be it are as at we your have will from "
    "not can by please our all if or meeting report thanks project team update today time "
    "next week review call attached new see let know about would like could should email "
    "information regards question issue schedule plan budget customer order invoice payment "
    "account data draft version release deadline friday monday office client contract sales"
).split()
FIRST = (
    "anna ben carla david emma felix grace hugo iris jonas karin leo maria nils olga paul".split()
)
LAST = "smith jones garcia mueller rossi dubois novak kim tanaka chen silva berg costa".split()
EXTENSIONS = ("pdf", "docx", "xlsx", "png", "zip", "csv")
CJK = {
    "ko": "회원가입 인증 메일입니다 안녕하세요 회의 일정 확인 부탁드립니다 첨부 보고서".split(),
    "ja": "明日の会議は東京で行います よろしくお願いします 資料を添付しました 報告書".split(),
    "zh": "欢迎使用我们的服务 请查看附件 会议时间 谢谢 项目报告 北京 客户 合同".split(),
}
MAILBOXES = (("inbox", 0.70), ("archive", 0.15), ("sent", 0.10), ("trash", 0.05))
NOW = datetime(2026, 11, 1, tzinfo=UTC)
ATTACHMENT_BLOB = "a" * 64


def _pseudo_words(count: int, rng: random.Random) -> list[str]:
    onsets = "b c d f g h j k l m n p r s t v w z br ch cl dr fl gr pl pr sh st th tr".split()
    vowels = "a e i o u ai ea ee io oa ou".split()
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "ng"]
    words: dict[str, None] = {}
    while len(words) < count:
        syllables = rng.choice((1, 2, 2, 3, 3, 4))
        word = "".join(
            rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(syllables)
        )
        if word not in COMMON:
            words[word] = None
    return list(words)


@dataclass
class Corpus:
    """What was generated, kept for choosing realistic queries."""

    users: list[str] = field(default_factory=list)
    vocabulary: list[str] = field(default_factory=list)
    senders: list[tuple[str, str]] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    """Adjacent word pairs seen in bodies: phrases that exist."""
    messages: int = 0


class _Words:
    def __init__(self, rng: random.Random, vocabulary: Sequence[str]) -> None:
        self.rng = rng
        self.vocabulary = vocabulary
        self.cumulative = list(
            accumulate(1.0 / (rank + 1) ** 1.05 for rank in range(len(vocabulary)))
        )

    def take(self, count: int) -> list[str]:
        return self.rng.choices(self.vocabulary, cum_weights=self.cumulative, k=count)


def _message(rng: random.Random, words: _Words, corpus: Corpus, index: int) -> ParsedMessage:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    domain = f"{rng.choice(('corp', 'mail', 'shop', 'uni', 'example'))}{index % 40}.test"
    subject = " ".join(words.take(rng.randint(2, 8))).capitalize()
    if rng.random() < 0.3:
        subject = "Re: " + subject
    length = min(int(rng.lognormvariate(4.5, 0.9)) + 5, 4000)
    body_words = words.take(length)
    if rng.random() < 0.05:
        language = rng.choice(tuple(CJK))
        body_words = rng.choices(CJK[language], k=rng.randint(5, 40))
        subject = " ".join(rng.choices(CJK[language], k=3))
    lines = [" ".join(body_words[i : i + 12]) for i in range(0, len(body_words), 12)]
    if index % 50 == 0 and len(body_words) > 3:
        start = rng.randrange(len(body_words) - 1)
        corpus.pairs.append((body_words[start], body_words[start + 1]))
    attachments = [
        ParsedAttachment(
            filename=f"{words.take(1)[0]}-{rng.randint(1, 99)}.{rng.choice(EXTENSIONS)}",
            content_type="application/octet-stream",
            data=b"",
        )
        for _ in range(rng.choice((1, 1, 2)) if rng.random() < 0.12 else 0)
    ]
    return ParsedMessage(
        subject=subject,
        from_name=f"{first.capitalize()} {last.capitalize()}",
        from_address=f"{first}.{last}@{domain}",
        text="Hello,\n\n" + ".\n".join(lines) + f".\n\n{first.capitalize()}\n",
        attachments=attachments,
    )


def _chunks(items: list[dict[str, Any]], size: int = 2000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _insert(db: Database, model: Any, rows: list[dict[str, Any]]) -> None:
    for chunk in _chunks(rows):
        async with db.engine.begin() as connection:
            await connection.execute(insert(model), chunk)


async def load_corpus(
    db: Database, corpus: Corpus, messages: list[tuple[int, ParsedMessage, dict[str, Any]]]
) -> None:
    """Users, then every table a filed message touches, in dependency order."""
    async with db.session() as session, session.begin():
        await add_domain(session, "bench.test")
        for address in corpus.users:
            await add_user(session, address, "bench password 123")
    async with db.session() as session:
        rows = await session.execute(select(Mailbox.user_id, Mailbox.role, Mailbox.id))
        user_ids = {a: i for a, i in await session.execute(select(User.address, User.id))}
        boxes = {(user_id, role): box_id for user_id, role, box_id in rows}
    await _insert(db, Blob, [{"key": ATTACHMENT_BLOB, "size": 1, "created_at": NOW}])
    batch = 5000
    for start in range(0, len(messages), batch):
        part = messages[start : start + batch]
        blobs, contents, threads, copies, attachments, documents = [], [], [], [], [], []
        for index, parsed, meta in part:
            key = hashlib.sha256(f"bench message {index}".encode()).hexdigest()
            user_id = user_ids[meta["user"]]
            thread_id = new_id()
            blobs.append({"key": key, "size": meta["size"], "created_at": meta["received_at"]})
            contents.append(
                {
                    "blob_key": key,
                    "text_body": parsed.text,
                    "html_body": "",
                    "headers": {},
                    "defects": [],
                }
            )
            threads.append(
                {
                    "id": thread_id,
                    "user_id": user_id,
                    "subject_key": parsed.subject[:255].lower(),
                    "last_message_at": meta["received_at"],
                }
            )
            copies.append(
                {
                    "id": new_id(),
                    "user_id": user_id,
                    "mailbox_id": boxes[(user_id, meta["mailbox"])],
                    "thread_id": thread_id,
                    "blob_key": key,
                    "message_id_header": f"<{key[:20]}@bench.test>",
                    "subject": parsed.subject,
                    "from_name": parsed.from_name,
                    "from_address": parsed.from_address,
                    "to_addresses": [meta["user"]],
                    "cc_addresses": [],
                    "bcc_addresses": [],
                    "date": meta["received_at"],
                    "received_at": meta["received_at"],
                    "size": meta["size"],
                    "snippet": parsed.snippet,
                    "has_attachments": bool(parsed.attachments),
                    "seen": meta["seen"],
                    "flagged": meta["flagged"],
                    "answered": False,
                }
            )
            for position, attachment in enumerate(parsed.attachments):
                attachments.append(
                    {
                        "id": f"{key[:28]}{position:04x}",
                        "content_key": key,
                        "position": position,
                        "blob_key": ATTACHMENT_BLOB,
                        "filename": attachment.filename,
                        "content_type": attachment.content_type,
                        "size": 1,
                        "content_id": None,
                    }
                )
            document = from_parsed(parsed)
            documents.append(
                {
                    "blob_key": key,
                    "version": 1,
                    "indexed_at": meta["received_at"],
                    **document.__dict__,
                }
            )
        for model, rows_ in (
            (Blob, blobs),
            (MessageContent, contents),
            (Thread, threads),
            (Message, copies),
            (Attachment, attachments),
            (SearchDocument, documents),
        ):
            if rows_:
                await _insert(db, model, rows_)


def build_corpus(count: int, users: int, seed: int = 7) -> tuple[Corpus, list[Any]]:
    rng = random.Random(seed)
    corpus = Corpus(users=[f"user{n}@bench.test" for n in range(users)])
    corpus.vocabulary = COMMON + _pseudo_words(30_000, rng)
    words = _Words(rng, corpus.vocabulary)
    corpus.senders = [(first, last) for first in FIRST for last in LAST]
    messages = []
    boxes = [name for name, _ in MAILBOXES]
    weights = [share for _, share in MAILBOXES]
    for index in range(count):
        parsed = _message(rng, words, corpus, index)
        size = (
            len(parsed.text.encode())
            + 900
            + sum(int(rng.lognormvariate(11, 1.2)) for _ in parsed.attachments)
        )
        meta = {
            "user": corpus.users[index % users],
            "mailbox": rng.choices(boxes, weights)[0],
            "received_at": NOW - timedelta(seconds=rng.randint(0, 3 * 365 * 86400)),
            "size": size,
            "seen": rng.random() < 0.7,
            "flagged": rng.random() < 0.04,
        }
        messages.append((index, parsed, meta))
    corpus.messages = count
    return corpus, messages
