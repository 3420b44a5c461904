"""Log lines: JSON that parses, with the message id of the mail being handled (issue 9, 2)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from postroom.logs import (
    JsonFormatter,
    TextFormatter,
    current_message_id,
    message_context,
    message_scope,
    set_message_id,
)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("postroom.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_fields_extras_and_the_message_id(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter("smtp-in"))
    logger.info("outside %s", "any mail")
    with message_context("01abc"):
        logger.info("accepted %s", "01abc", extra={"recipients": 2, "peer": ("127.0.0.1", 25)})
        try:
            raise ValueError("line one\nline two")
        except ValueError:
            logger.exception("failed")
    outside, accepted, failed = _lines(stream)
    assert outside["message"] == "outside any mail"
    assert "message_id" not in outside
    assert {k: accepted[k] for k in ("level", "logger", "role", "message", "message_id")} == {
        "level": "INFO",
        "logger": "postroom.test_logs",
        "role": "smtp-in",
        "message": "accepted 01abc",
        "message_id": "01abc",
    }
    assert accepted["recipients"] == 2
    assert accepted["peer"] == ["127.0.0.1", 25]
    assert str(accepted["ts"]).endswith("+00:00")
    assert failed["level"] == "ERROR"
    assert "ValueError: line one" in str(failed["exc"])


def test_text_lines_append_the_message_id(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(TextFormatter())
    with message_context("01abc"):
        logger.warning("deferred")
    logger.warning("idle")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("WARNING postroom.test_logs: deferred [01abc]")
    assert second.endswith("WARNING postroom.test_logs: idle")


async def test_concurrent_tasks_keep_their_own_ids_and_scopes_undo_them() -> None:
    async def handle(message_id: str) -> str | None:
        with message_scope():
            set_message_id(message_id)
            await asyncio.sleep(0.01)
            seen = current_message_id()
        assert current_message_id() is None
        return seen

    assert list(await asyncio.gather(handle("a"), handle("b"))) == ["a", "b"]
    assert current_message_id() is None
