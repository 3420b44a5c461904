"""``postroom search check`` finds what the index lacks or got wrong; ``reindex`` repairs it.

The commands run through ``postroom.cli.main`` in this process (the same code the console
script runs), which keeps the test fast; setup and damage go straight to the database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from postroom.cli import main
from postroom.message import parse_message
from postroom.settings import Settings
from search.documents import index_stored
from search.registry import open_search
from search.service import search_messages
from storage.db.models import SearchDocument, User
from storage.registry import Storage, open_storage
from storage.repositories.accounts import add_domain, add_user
from storage.repositories.mail import add_copy, find_mailbox, register_blob, store_content
from storage.schema import migrate
from storage.transaction import transaction
from tests.support.gateway_api import compose


async def _with_store(settings: Settings, work: object) -> object:
    store = open_storage(settings)
    try:
        return await work(store)  # type: ignore[operator]
    finally:
        await store.close()


async def _file(store: Storage, user: User, subject: str, text: str) -> str:
    """File and index one message the way the processor does; its content key."""
    raw = compose(subject, to=user.address, text=text)
    parsed = parse_message(raw)
    key = await store.blobs.put(raw)
    async with transaction(store) as session:
        await register_blob(session, key, len(raw))
        await store_content(session, key, parsed, [])
        box = await find_mailbox(session, user.id, "inbox")
        await add_copy(
            session, user_id=user.id, mailbox=box, raw_key=key, size=len(raw), parsed=parsed
        )
        await index_stored(session, key)
    return key


async def _populate(store: Storage) -> tuple[list[str], str]:
    async with store.db.session() as session, session.begin():
        await add_domain(session, "idx.test")
        ann = await add_user(session, "ann@idx.test", "long enough password")
        bob = await add_user(session, "bob@idx.test", "long enough password")
    keys = [await _file(store, ann, f"ann {n}", f"alpha note {n}") for n in range(3)]
    return keys, await _file(store, bob, "bob 0", "beta note")


async def _subjects(store: Storage, address: str, q: str) -> list[str]:
    backend = open_search(store)
    try:
        async with store.db.session() as session:
            user_id = await session.scalar(select(User.id).where(User.address == address))
        assert user_id is not None
        page = await search_messages(store, backend, user_id, q, limit=10)
        return [hit.message.subject for hit in page.items]
    finally:
        await backend.close()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_reports_missing_and_stale_then_reindex_repairs(
    own_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("POSTROOM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POSTROOM_DATABASE_URL", own_database_url)
    migrate(own_database_url)
    settings = Settings(data_dir=tmp_path, database_url=own_database_url)
    keys, bobs = asyncio.run(_with_store(settings, _populate))  # type: ignore[misc]

    async def damage(store: Storage) -> None:
        async with transaction(store) as session:
            gone = SearchDocument.blob_key.in_([keys[0], bobs])
            await session.execute(delete(SearchDocument).where(gone))
            await session.execute(
                update(SearchDocument)
                .where(SearchDocument.blob_key == keys[1])
                .values(body="something else entirely")
            )

    def subjects(q: str) -> object:
        return asyncio.run(_with_store(settings, lambda s: _subjects(s, "ann@idx.test", q)))

    code, out, _ = _run(capsys, "search", "check")
    assert (code, out.splitlines()[0]) == (
        0,
        "checked 4 message contents: 0 messages missing from the index, 0 contents stale",
    )

    asyncio.run(_with_store(settings, damage))
    assert subjects("alpha") == ["ann 2"]  # one row gone, one no longer saying "alpha"
    code, out, err = _run(capsys, "search", "check")
    lines = out.splitlines()
    assert code == 1
    assert lines[0] == (
        "checked 4 message contents: 2 messages missing from the index, 1 contents stale"
    )
    assert sum(line.startswith("missing\tmessage ") for line in lines) == 2
    assert f"stale\tcontent {keys[1]}" in lines
    assert lines[-1] == "run `postroom search reindex` to repair"
    assert "checking [" in err  # the progress bar

    code, out, err = _run(capsys, "search", "reindex", "--user", "bob@idx.test")
    assert code == 0, err
    assert out.strip().startswith("indexed 1 message contents of bob@idx.test")
    assert "indexing [" in err and "1/1 100%" in err
    assert _run(capsys, "search", "check", "--user", "bob@idx.test")[0] == 0
    assert _run(capsys, "search", "check")[0] == 1

    code, out, err = _run(capsys, "search", "reindex")
    assert code == 0, err
    assert out.strip().startswith("indexed 4 message contents")
    assert _run(capsys, "search", "check")[0] == 0
    assert subjects("alpha") == ["ann 2", "ann 1", "ann 0"]

    code, _, err = _run(capsys, "search", "reindex", "--user", "nobody@idx.test")
    assert code == 2
    assert "no user nobody@idx.test" in err
