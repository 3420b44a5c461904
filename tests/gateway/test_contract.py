"""The OpenAPI contract, checked by schemathesis against a running postroom, signed in.

Every operation of the published document gets generated requests (fixed examples first,
then schema-derived data; derandomised so CI sees the same cases every run). No answer may be
a 5xx, and no answer may break the schema the document promises for its status code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.platform import PASSWORD, Platform

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 5
LONG_POLL_CAP = 1  # seconds: a long poll's wait is not what this test is about
# Signing out would revoke the token every other case signs in with; it is tested on its own.
SKIPPED = {("POST", "/api/v1/auth/logout")}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, str]]:
    """A running postroom (SQLite) with an administrator signed in: every route is reachable."""
    directory = Path(tmp_path_factory.mktemp("contract"))
    unlimited = {
        f"POSTROOM_RATE_{name}": "" for name in ("SEND_USER", "SEND_IP", "READ_USER", "READ_IP")
    }
    running = Platform(directory, f"sqlite+aiosqlite:///{directory / 'postroom.db'}", unlimited)
    running.setup("example.test")
    added = running.cli("user", "add", "root@example.test", "--password", PASSWORD, "--admin")
    assert added.returncode == 0, added.stderr
    running.start()
    try:
        yield running, running.token("root@example.test")
    finally:
        running.stop()


def _check(operation: Any, base: str, token: str) -> None:
    """Run the generated cases of one operation; raises on the first failing check."""
    long_poll = any(p.name == "timeout" for p in operation.query)

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        if long_poll:  # left out, the wait defaults to 30 s
            asked = (case.query or {}).get("timeout")
            wait = min(asked, LONG_POLL_CAP) if isinstance(asked, int | float) else 0
            case.query = {**(case.query or {}), "timeout": wait}
        case.call_and_validate(
            base_url=base,
            headers={"Authorization": f"Bearer {token}"},
            checks=[not_a_server_error, response_schema_conformance],
            timeout=30,
        )

    run()


@pytest.mark.timeout(300)  # about 200 requests; the platform starts in setup too
def test_no_server_errors_and_no_schema_breaking_answers(live: tuple[Platform, str]) -> None:
    platform, token = live
    base = f"http://127.0.0.1:{platform.http_port}"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        tried += 1
        try:
            _check(operation, base, token)
        except Exception as exc:  # every operation is tried; all failures are reported
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert tried >= 30, f"only {tried} operations in the document"
    assert not failures, "\n\n".join(failures)
    after = httpx.get(f"{base}/api/v1/mailboxes", headers={"Authorization": f"Bearer {token}"})
    assert after.is_success  # the session survived every case


def test_every_operation_documents_its_answers_and_every_body_has_an_example(
    live: tuple[Platform, str],
) -> None:
    """The document a client generator reads: summaries, success schemas, body examples."""
    platform, _ = live
    document = httpx.get(f"http://127.0.0.1:{platform.http_port}/openapi.json").json()
    components = document["components"]["schemas"]
    missing: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            if not any(code.startswith("2") for code in operation["responses"]):
                missing.append(f"{where}: no success response")
            body = operation.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                schema = content.get("schema", {})
                if "$ref" in schema:
                    schema = components[schema["$ref"].rsplit("/", 1)[1]]
                has_example = (
                    "example" in content or "examples" in content or schema.get("examples")
                )
                if media == "application/json" and not has_example:
                    missing.append(f"{where}: the JSON body has no example")
    assert not missing, "\n".join(missing)
