"""A message's snippet: its first 200 characters with whitespace runs as one space, however
long the text and wherever the whitespace falls."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from postroom.message import SNIPPET_LENGTH, snippet_of


def whole(text: str) -> str:
    """The snippet by its definition: over the whole text."""
    return re.sub(r"\s+", " ", text).strip()[:SNIPPET_LENGTH]


_PIECES = st.sampled_from(["a", "word ", " ", "\n", "\t\t", "  \r\n ", "é", "\u3000", "x" * 150])


@given(st.lists(_PIECES, max_size=400).map("".join))
def test_the_snippet_is_the_one_the_whole_text_gives(text: str) -> None:
    assert snippet_of(text) == whole(text)


def test_whitespace_runs_around_the_cut_and_at_both_ends() -> None:
    for text in (
        " " * 1000 + "start " + "word " * 100,
        "x" * 199 + " " * 5000 + "y" * 10,
        "x" * 200 + " " * 5000,
        "\n" * 399 + "a" * 201,
        "a b " * 10_000,
    ):
        assert snippet_of(text) == whole(text)
    assert snippet_of("  Hello,\n\n  world  ") == "Hello, world"
