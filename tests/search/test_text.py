"""Normalisation shared by indexing and querying: accents, case, width, and CJK bigrams."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from search.text import QueryTokens, index_text, query_tokens, tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Résumé, CAFÉ déjà-vu", ["resume", "cafe", "deja", "vu"]),
        ("Straße", ["strasse"]),
        ("\uff21\uff22\uff23\uff11\uff12\uff13", ["abc123"]),  # full-width
        ("carol@corp.test", ["carol", "corp", "test"]),
        ("snake_case", ["snake", "case"]),
        ("회원가입 인증", ["회원", "원가", "가입", "입", "인증", "증"]),
        ("がぎ", ["がぎ", "ぎ"]),  # voiced kana keep their marks
        ("email주소", ["email", "주소", "소"]),
    ],
)
def test_tokens(text: str, expected: list[str]) -> None:
    assert tokens(text) == expected


def test_index_text_joins_tokens_with_single_spaces() -> None:
    assert index_text("  Hello,\n\tWORLD!  ") == "hello world"


def _is_phrase_in(query: str, stored: str) -> bool:
    """How the engines match: the query's tokens side by side among the stored ones."""
    wanted = query_tokens(query)
    have = tokens(stored)
    n = len(wanted.tokens)
    for start in range(len(have) - n + 1):
        window = have[start : start + n]
        if window[:-1] == list(wanted.tokens[:-1]) and (
            window[-1].startswith(wanted.tokens[-1])
            if wanted.prefix
            else window[-1] == wanted.tokens[-1]
        ):
            return True
    return False


@pytest.mark.parametrize(
    ("query", "stored"),
    [
        ("인증", "회원가입 인증 메일입니다"),
        ("메일", "회원가입 인증 메일입니다"),
        ("가입", "회원가입 인증 메일입니다"),
        ("会議", "明日の会議は東京で行います"),
        ("東京", "明日の会議は東京で行います"),
        ("京", "明日の会議は東京で行います"),
        ("服务", "欢迎使用我们的服务"),
        ("务", "欢迎使用我们的服务"),
        ("resume", "Résumé"),
        ("RÉSUMÉ", "resume"),
    ],
)
def test_a_query_word_matches_inside_stored_text(query: str, stored: str) -> None:
    assert _is_phrase_in(query, stored)


@pytest.mark.parametrize(
    ("query", "stored"), [("인메", "회원가입 인증 메일입니다"), ("京東", "東京")]
)
def test_cjk_characters_must_be_adjacent_and_in_order(query: str, stored: str) -> None:
    assert not _is_phrase_in(query, stored)


def test_query_tokens_drop_the_trailing_single_character_of_a_run() -> None:
    assert query_tokens("東京大学") == QueryTokens(("東京", "京大", "大学"))
    assert query_tokens("書") == QueryTokens(("書",), prefix=True)
    assert query_tokens("...") == QueryTokens(())


_ASCII_PIECES = st.sampled_from(["Word", " ", "x_y", "a-b", "CAPS", "9.5", "\t\n", "@", "_"])


@given(st.lists(_ASCII_PIECES, max_size=50).map("".join))
def test_ascii_text_tokenises_as_any_other_text(text: str) -> None:
    """ASCII text takes a shorter path; a non-ASCII word after it sends the same text down
    the general one (folding, CJK splitting), which must give the same tokens."""
    assert tokens(text + " é") == [*tokens(text), "e"]
    assert index_text(text + " é") == " ".join([*tokens(text), "e"])
    assert index_text(text) == " ".join(tokens(text))


@given(st.text(st.characters(max_codepoint=0x7F)))
def test_every_ascii_character_splits_and_folds_as_in_the_general_path(text: str) -> None:
    assert tokens(text + " é") == [*tokens(text), "e"]
    assert index_text(text) == " ".join(tokens(text))
