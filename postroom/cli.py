"""The ``postroom`` command line.

Errors a user can fix (bad input, unknown domain, duplicate user, schema not migrated) print one
line to stderr and exit with code 2, changing nothing; a database that cannot be reached exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from postroom.errors import PostroomError
from postroom.runner import ALL_ROLES, run_roles
from postroom.settings import Settings
from storage.db.models import Domain, User
from storage.registry import Storage, open_storage
from storage.repositories.accounts import add_domain, add_user
from storage.schema import check_schema, migrate

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postroom",
        description="postroom: a webmail platform. Settings come from POSTROOM_* variables "
        "or postroom.toml; see README.md.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="run every role in this process")
    run = commands.add_parser("run", help="run one role (for running each service on its own)")

    run.add_argument("role", choices=ALL_ROLES)
    commands.add_parser("migrate", help="create or upgrade the database schema")

    domain = commands.add_parser("domain", help="manage hosted domains").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    domain.add_parser("add", help="host a new domain").add_argument("name")
    domain.add_parser("list", help="list hosted domains")

    user = commands.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    add = user.add_parser("add", help="create a user with the standard mailboxes")
    add.add_argument("address")
    add.add_argument("--password", required=True)
    add.add_argument("--admin", action="store_true", help="may manage domains and users")
    user.add_parser("list", help="list users")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError: a malformed POSTROOM_* value
        print(f"postroom: error: invalid settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "migrate":
            migrate(settings.database_url)
            print(f"database schema is up to date ({_safe_url(settings.database_url)})")
            return 0
        if args.command in ("up", "run"):
            roles = ALL_ROLES if args.command == "up" else [args.role]
            asyncio.run(run_roles(settings, roles))
            return 0
        handler = _ADMIN[(args.command, args.action)]
        asyncio.run(_with_storage(settings, lambda store: handler(store, args)))
        return 0
    except PostroomError as exc:
        print(f"postroom: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, DBAPIError) as exc:
        print(
            f"postroom: error: cannot reach the database at {_safe_url(settings.database_url)}: "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _with_storage(settings: Settings, action: Callable[[Storage], Awaitable[None]]) -> None:
    store = open_storage(settings)
    try:
        await check_schema(store.db)
        await action(store)
    finally:
        await store.close()


async def _domain_add(store: Storage, args: argparse.Namespace) -> None:

    async with store.db.session() as session, session.begin():
        domain = await add_domain(session, args.name)
    print(f"domain {domain.name} added")


async def _domain_list(store: Storage, args: argparse.Namespace) -> None:

    async with store.db.session() as session:
        for name in await session.scalars(select(Domain.name).order_by(Domain.name)):
            print(name)


async def _user_add(store: Storage, args: argparse.Namespace) -> None:

    async with store.db.session() as session, session.begin():
        user = await add_user(session, args.address, args.password, is_admin=args.admin)
    print(f"user {user.address} added{' (admin)' if user.is_admin else ''}")


async def _user_list(store: Storage, args: argparse.Namespace) -> None:

    async with store.db.session() as session:
        for address, admin in await session.execute(
            select(User.address, User.is_admin).order_by(User.address)
        ):
            print(f"{address}{' (admin)' if admin else ''}")


_ADMIN: dict[tuple[str, str], Callable[[Storage, argparse.Namespace], Awaitable[None]]] = {
    ("domain", "add"): _domain_add,
    ("domain", "list"): _domain_list,
    ("user", "add"): _user_add,
    ("user", "list"): _user_list,
}

if __name__ == "__main__":
    sys.exit(main())
