"""The ``postroom`` command line.

Errors a user can fix (bad input, unknown domain, duplicate user, schema not migrated) print one
line to stderr and exit with code 2, changing nothing; a database that cannot be reached exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from postroom.addresses import normalize_domain
from postroom.dkim import dns_record
from postroom.errors import NotFound, PostroomError
from postroom.logs import setup_logging
from postroom.runner import ALL_ROLES, run_roles
from postroom.settings import Settings
from search.commands import add_search_commands, search_check, search_reindex
from storage.db.models import Domain, User
from storage.registry import Storage, open_storage
from storage.repositories import queue_admin, suppressions
from storage.repositories.accounts import add_domain, add_user, find_user, hosted_domain
from storage.repositories.tokens import create_api_key, list_api_keys, revoke_api_key
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
    apikey = commands.add_parser(
        "apikey", help="API keys for REST clients (the secret is shown once)"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    create = apikey.add_parser("create", help="create a key for a user and print its secret")
    create.add_argument("address")
    create.add_argument("--name", required=True, help="what the key is for")
    apikey.add_parser("list", help="list a user's keys (never their secrets)").add_argument(
        "address"
    )
    revoke = apikey.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("address")
    revoke.add_argument("key_id")
    _add_queue_commands(commands)
    add_search_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError: a malformed POSTROOM_* value
        print(f"postroom: error: invalid settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    role = {"up": "all", "run": getattr(args, "role", "")}.get(args.command, args.command)
    setup_logging(settings.log_level, settings.log_format, role)
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
        print(f"postroom: error: {_unavailable(exc, settings)}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


_CANNOT_LISTEN = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def _unavailable(exc: OSError | DBAPIError, settings: Settings) -> str:
    """What stopped the command: a port it could not listen on, or the database."""
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, OSError) and exc.errno in _CANNOT_LISTEN:
        return (
            f"cannot listen: {first_line}; another program holds the port or the address is "
            "not this machine's: choose another with the POSTROOM_*_PORT settings"
        )
    return (
        f"cannot reach the database at {_safe_url(settings.database_url)}: "
        f"{exc.__class__.__name__}: {first_line}"
    )


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


def _add_queue_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    queue = commands.add_parser(
        "queue", help="outbound deliveries: list, show, retry, hold, release, delete"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = queue.add_parser("list", help="deliveries by when they are due (unfinished ones)")
    listing.add_argument("--status", choices=queue_admin.STATUSES, help="only this status")
    listing.add_argument("--domain", help="only deliveries to this recipient domain")
    listing.add_argument("--limit", type=int, default=100)
    queue.add_parser("show", help="one delivery and each recipient's state").add_argument("id")
    queue.add_parser("retry", help="make a queued or deferred delivery due now").add_argument("id")
    hold = queue.add_parser("hold", help="keep a delivery back until released")
    hold.add_argument("id")
    hold.add_argument("--reason", help="shown to the sender in the send's status")
    queue.add_parser("release", help="put a held delivery back, due now").add_argument("id")
    queue.add_parser(
        "delete", help="cancel a delivery (kept, so the sender's status says cancelled)"
    ).add_argument("id")


def _print_entry(entry: queue_admin.QueueEntry) -> None:
    """One tab-separated line per delivery, for grep and cut; recipients indented below."""
    why = entry.held_reason if entry.status == "held" else entry.last_error
    print(
        f"{entry.id}\t{entry.status}\t{entry.domain}\t{entry.sender}\t"
        f"{entry.recipient_count} rcpt\t{entry.attempts} tries\t"
        f"next {entry.next_attempt_at:%Y-%m-%d %H:%M:%S}\t{why or ''}"
    )
    for recipient in entry.recipients:
        print(f"  {recipient.address}\t{recipient.status}\t{recipient.reply or ''}")


async def _queue_list(store: Storage, args: argparse.Namespace) -> None:
    async with store.db.session() as session:
        entries = await queue_admin.list_entries(
            session, status=args.status, domain=args.domain, limit=args.limit
        )
    for entry in entries:
        _print_entry(entry)


async def _queue_show(store: Storage, args: argparse.Namespace) -> None:
    async with store.db.session() as session:
        _print_entry(await queue_admin.show(session, args.id))


async def _queue_retry(store: Storage, args: argparse.Namespace) -> None:
    _print_entry(await queue_admin.retry(store, args.id))


async def _queue_hold(store: Storage, args: argparse.Namespace) -> None:
    _print_entry(await queue_admin.hold(store, args.id, args.reason))


async def _queue_release(store: Storage, args: argparse.Namespace) -> None:
    _print_entry(await queue_admin.release(store, args.id))


async def _queue_delete(store: Storage, args: argparse.Namespace) -> None:
    _print_entry(await queue_admin.delete(store, args.id))


async def _key_owner(session: AsyncSession, address: str) -> User:
    user = await find_user(session, address.strip())
    if user is None:
        raise NotFound(f"no user {address}; see `postroom user list`")
    return user


async def _apikey_create(store: Storage, args: argparse.Namespace) -> None:
    async with store.db.session() as session, session.begin():
        user = await _key_owner(session, args.address)
        secret, key = await create_api_key(session, user.id, args.name)
    print(f"API key {key.id} ({key.name}) created for {user.address}; it is shown only now:")
    print(secret)


async def _apikey_list(store: Storage, args: argparse.Namespace) -> None:
    async with store.db.session() as session:
        user = await _key_owner(session, args.address)
        keys = await list_api_keys(session, user.id)
    for key in keys:  # one tab-separated line each, for grep and cut
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        print(f"{key.id}\t{key.created_at:%Y-%m-%d %H:%M}\t{state}\t{key.name}")


async def _apikey_revoke(store: Storage, args: argparse.Namespace) -> None:
    async with store.db.session() as session, session.begin():
        user = await _key_owner(session, args.address)
        key = await revoke_api_key(session, user.id, args.key_id)
    print(f"API key {key.id} ({key.name}) of {user.address} revoked")


_ADMIN: dict[tuple[str, str], Callable[[Storage, argparse.Namespace], Awaitable[None]]] = {
    ("domain", "add"): _domain_add,
    ("domain", "list"): _domain_list,
    ("domain", "dkim"): _domain_dkim,
    ("user", "add"): _user_add,
    ("user", "list"): _user_list,
    ("suppression", "list"): _suppression_list,
    ("suppression", "remove"): _suppression_remove,
    ("apikey", "create"): _apikey_create,
    ("apikey", "list"): _apikey_list,
    ("apikey", "revoke"): _apikey_revoke,
    ("search", "reindex"): search_reindex,
    ("search", "check"): search_check,
    ("queue", "list"): _queue_list,
    ("queue", "show"): _queue_show,
    ("queue", "retry"): _queue_retry,
    ("queue", "hold"): _queue_hold,
    ("queue", "release"): _queue_release,
    ("queue", "delete"): _queue_delete,
}

if __name__ == "__main__":
    sys.exit(main())
