"""The admin command line (issue 2, point 6).

Good input works; bad input prints one line, exits 2 and changes nothing.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.db import snapshot
from tests.support.platform import Platform


@pytest.fixture
def cli(own_database_url: str, tmp_path: Path) -> Platform:
    platform = Platform(tmp_path, own_database_url)
    result = platform.cli("migrate")
    assert result.returncode == 0, result.stderr
    assert "database schema is up to date" in result.stdout
    return platform


@pytest.fixture(scope="module")
def populated(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    """One database per engine with example.test and ann, shared by the bad-input cases."""
    platform = Platform(tmp_path_factory.mktemp("cli"), database_url)
    platform.setup("example.test", "ann@example.test")
    return platform


def _state(cli: Platform) -> tuple[str, str]:
    return cli.cli("domain", "list").stdout, cli.cli("user", "list").stdout


def test_domain_and_user_add(cli: Platform) -> None:
    added = cli.cli("domain", "add", "Example.TEST")
    assert added.returncode == 0, added.stderr
    assert added.stdout.splitlines()[0] == "domain example.test added"  # then the DKIM record
    user = cli.cli("user", "add", "Ann@Example.test", "--password", "long-enough")
    assert user.returncode == 0, user.stderr
    assert user.stdout.strip() == "user ann@example.test added"
    admin = cli.cli("user", "add", "root@example.test", "--password", "long-enough", "--admin")
    assert admin.stdout.strip() == "user root@example.test added (admin)"
    assert _state(cli) == ("example.test\n", "ann@example.test\nroot@example.test (admin)\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("user", "add", "not-an-address", "--password", "long-enough"),
            "is not a valid mail address",
        ),
        (("user", "add", "a@b\r\nc.test", "--password", "long-enough"), "control character"),
        (
            ("user", "add", "ann@unknown.test", "--password", "long-enough"),
            "domain unknown.test is not hosted here",
        ),
        (
            ("user", "add", "ANN@example.test", "--password", "long-enough"),
            "user ann@example.test already exists",
        ),
        (("user", "add", "new@example.test", "--password", "short"), "at least 8 characters"),
        (("domain", "add", "example.test"), "domain example.test is already hosted here"),
        (("domain", "add", "not a domain"), "is not a valid domain name"),
        (("domain", "add", "localhost"), "is not a valid domain name"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    populated: Platform, args: tuple[str, ...], message: str
) -> None:
    before = snapshot(populated.database_url)

    result = populated.cli(*args)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("postroom: error: ")
    assert message in lines[0]
    assert snapshot(populated.database_url) == before


def test_unknown_role_is_a_usage_error(cli: Platform) -> None:
    result = cli.cli("run", "mailman")
    assert result.returncode == 2
    assert "invalid choice: 'mailman'" in result.stderr


def test_commands_refuse_an_unmigrated_database(tmp_path: Path) -> None:
    platform = Platform(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    result = platform.cli("domain", "add", "example.test")
    assert result.returncode == 2
    assert "run `postroom migrate`" in result.stderr
    up = platform.cli("up")
    assert up.returncode == 2
    assert "run `postroom migrate`" in up.stderr


def test_unreachable_database_exits_1_with_the_url(tmp_path: Path) -> None:
    platform = Platform(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:1/none")
    result = platform.cli("migrate")
    assert result.returncode == 1
    assert (
        "cannot reach the database at postgresql+asyncpg://postgres@127.0.0.1:1/none"
        in result.stderr
    )


def test_a_port_already_taken_is_named_as_such_not_as_the_database(cli: Platform) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", cli.smtp_port))
        holder.listen()
        result = cli.cli("run", "smtp-in")
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "POSTROOM_*_PORT" in result.stderr
    assert "database" not in result.stderr
