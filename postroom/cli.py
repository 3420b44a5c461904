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

from postroom.addresses import normalize_domain
from postroom.dkim import dns_record
from postroom.errors import NotFound, PostroomError
from postroom.runner import ALL_ROLES, run_roles
from postroom.settings import Settings
from storage.db.models import Domain, User
from storage.registry import Storage, open_storage
from storage.repositories import suppressions
from storage.repositories.accounts import add_domain, add_user, hosted_domain
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
    domain.add_parser(
        "dkim", help="print the DNS TXT record that publishes a domain's DKIM key"
    ).add_argument("name")

    user = commands.add_parser("user", help="manage users").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    add = user.add_parser("add", help="create a user with the standard mailboxes")
    add.add_argument("address")
    add.add_argument("--password", required=True)
    add.add_argument("--admin", action="store_true", help="may manage domains and users")
    user.add_parser("list", help="list users")

    suppression = commands.add_parser(
        "suppression", help="addresses sends are refused to after a hard bounce"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    suppression.add_parser("list", help="list suppressed addresses (expired ones left out)")
    suppression.add_parser("remove", help="allow sending to an address again").add_argument(
        "address"
    )
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
        domain = await add_domain(session, args.name, dkim_selector=store.settings.dkim_selector)
    print(f"domain {domain.name} added")
    _print_dkim_record(domain)


async def _domain_dkim(store: Storage, args: argparse.Namespace) -> None:

    name = normalize_domain(args.name, field="name")
    async with store.db.session() as session:
        domain = await hosted_domain(session, name)
    if domain is None:
        raise NotFound(f"domain {name} is not hosted here; see `postroom domain list`")
    _print_dkim_record(domain)


def _print_dkim_record(domain: Domain) -> None:
    """Tell the admin what to publish: without the record, receivers cannot check signatures."""
    if domain.dkim_selector is None or domain.dkim_private_key is None:
        raise NotFound(f"domain {domain.name} has no DKIM key; its mail goes out unsigned")
    record = dns_record(domain.name, domain.dkim_selector, domain.dkim_private_key)
    print("publish this DNS TXT record so receivers can verify our DKIM signatures:")
    print(record.zone_line())


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


async def _suppression_list(store: Storage, args: argparse.Namespace) -> None:
    async with store.db.session() as session:
        rows = await suppressions.list_all(session)
    for row in rows:  # one tab-separated line each, for grep and cut
        until = f"until {row.expires_at:%Y-%m-%d %H:%M}" if row.expires_at else "until removed"
        since = f"{row.source} {row.created_at:%Y-%m-%d %H:%M}"
        print(f"{row.address}\t{since}\t{until}\t{row.reason}")


async def _suppression_remove(store: Storage, args: argparse.Namespace) -> None:
    async with store.db.session() as session, session.begin():
        removed = await suppressions.remove(session, args.address)
    if not removed:
        raise NotFound(
            f"{args.address} is not on the suppression list; see `postroom suppression list`"
        )
    print(f"{args.address} removed from the suppression list")


_ADMIN: dict[tuple[str, str], Callable[[Storage, argparse.Namespace], Awaitable[None]]] = {
    ("domain", "add"): _domain_add,
    ("domain", "list"): _domain_list,
    ("domain", "dkim"): _domain_dkim,
    ("user", "add"): _user_add,
    ("user", "list"): _user_list,
    ("suppression", "list"): _suppression_list,
    ("suppression", "remove"): _suppression_remove,
}

if __name__ == "__main__":
    sys.exit(main())
