"""``postroom search reindex`` and ``postroom search check``: the admin side of the index.

The CLI module wires these in; they live here so the CLI stays a table of commands.
"""

from __future__ import annotations

import argparse
from typing import Any

from search.maintenance import check, content_keys, reindex, user_id_of
from search.progress import ProgressBar
from search.registry import open_search
from storage.registry import Storage

__all__ = ["EXIT_INDEX_OUT_OF_DATE", "add_search_commands", "search_check", "search_reindex"]

EXIT_INDEX_OUT_OF_DATE = 1
SHOWN = 20


def add_search_commands(commands: Any) -> None:
    """Add ``search reindex|check`` to the CLI's subcommands (an argparse subparsers action)."""
    search = commands.add_parser("search", help="the full-text search index").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    for name, help_ in (
        ("reindex", "rebuild the index from the database"),
        ("check", "report messages missing from, or stale in, the index (exit 1 if any)"),
    ):
        action = search.add_parser(name, help=help_)
        action.add_argument("--user", metavar="ADDRESS", help="only this user's mail")


async def search_reindex(store: Storage, args: argparse.Namespace) -> None:
    user_id = await user_id_of(store, args.user)
    backend = open_search(store)
    try:
        bar = ProgressBar("indexing", len(await content_keys(store, user_id)))
        engine_bar: ProgressBar | None = None

        def engine_progress(more: int) -> None:
            nonlocal engine_bar
            if engine_bar is None:
                engine_bar = ProgressBar(f"copying to {backend.name}", 0)
            engine_bar(more)

        written = await reindex(store, backend, user_id, bar, engine_progress)
        bar.close()
        if engine_bar is not None:
            engine_bar.close()
    finally:
        await backend.close()
    whose = f" of {args.user}" if args.user else ""
    print(f"indexed {written} message contents{whose} ({backend.name})")


async def search_check(store: Storage, args: argparse.Namespace) -> None:
    user_id = await user_id_of(store, args.user)
    bar = ProgressBar("checking", len(await content_keys(store, user_id)))
    report = await check(store, user_id, bar)
    bar.close()
    print(
        f"checked {report.checked} message contents: {len(report.missing)} messages missing "
        f"from the index, {len(report.stale)} contents stale"
    )
    for message_id in report.missing[:SHOWN]:
        print(f"missing\tmessage {message_id}")
    for key in report.stale[:SHOWN]:
        print(f"stale\tcontent {key}")
    if report.missing or report.stale:
        hint = f" --user {args.user}" if args.user else ""
        print(f"run `postroom search reindex{hint}` to repair")
        raise SystemExit(EXIT_INDEX_OUT_OF_DATE)
