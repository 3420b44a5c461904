"""Turning text into index tokens, the same way for stored mail and for queries.

SQLite's ``unicode61`` tokenizer and PostgreSQL's ``simple`` parser split words on spaces and
punctuation, which leaves Chinese, Japanese and Korean text as one giant "word" per run of
characters (``회원가입`` would only be found by ``회원가입``). So the text is normalised here, in
Python, before either engine sees it:

1. NFKD, then accents (combining marks) dropped from non-CJK letters and NFC again: ``résumé``
   becomes ``resume``, full-width letters become ASCII, while Hangul syllables and Japanese
   voiced kana (``が``) recompose unchanged;
2. case folded (``Straße`` -> ``strasse``);
3. split into words of letters and digits; every run of CJK characters becomes its overlapping
   bigrams plus its last character alone (``인증메일`` -> ``인증 증메 메일 일``).

A query word goes through the same steps, and its tokens must appear next to each other (a
phrase), so ``메일`` finds ``인증메일`` and a single character finds every bigram it starts. The
engines then see space-separated lowercase tokens, for which their plain tokenizers are exact.
Bigrams are the usual choice for CJK without a dictionary (Lucene's CJKBigramFilter does the
same); they need no language detection and no extra dependency.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["QueryTokens", "fold", "index_text", "is_cjk", "query_tokens", "tokens"]

_WORD = re.compile(r"[^\W_]+")
_ASCII_TOKENS = bytes(
    (c | 0x20 if chr(c).isalpha() else c) if c < 0x80 and chr(c).isalnum() else 0x20
    for c in range(256)
)
"""``_WORD`` on lowercased ASCII text as one ``bytes.translate``: letters lowercased, digits
kept, everything else (``_`` too) a space to split on. Three times as fast as a regex's
``findall`` on a kilobyte of text (and every send and message indexes its body)."""
_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x31FF),  # Bopomofo, Hangul compatibility Jamo, Katakana extensions
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xA960, 0xA97F),  # Hangul Jamo Extended-A
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xD7B0, 0xD7FF),  # Hangul Jamo Extended-B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3FFFF),  # CJK Extensions B and later
)
_KEEP_MARKS_FROM = 0x2E80  # marks on CJK bases (kana voicing) carry meaning: keep them


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def fold(text: str) -> str:
    """Accents dropped (outside CJK), compatibility forms unified, case folded."""
    if text.isascii():
        return text.lower()
    kept: list[str] = []
    base = 0
    for char in unicodedata.normalize("NFKD", text):
        if unicodedata.combining(char):
            if base >= _KEEP_MARKS_FROM:
                kept.append(char)
            continue
        base = ord(char)
        kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept)).casefold()


def _split_cjk(word: str) -> list[str]:
    """A word mixing scripts: Latin runs stay whole, CJK runs become bigrams + last char."""
    if word.isascii():
        return [word]
    out: list[str] = []
    run: list[str] = []
    latin: list[str] = []

    def flush_run() -> None:
        if run:
            out.extend(run[i] + run[i + 1] for i in range(len(run) - 1))
            out.append(run[-1])
            run.clear()

    def flush_latin() -> None:
        if latin:
            out.append("".join(latin))
            latin.clear()

    for char in word:
        if is_cjk(char):
            flush_latin()
            run.append(char)
        else:
            flush_run()
            latin.append(char)
    flush_run()
    flush_latin()
    return out


def tokens(text: str) -> list[str]:
    """The index tokens of ``text``, in order."""
    if text.isascii():  # no CJK to split, nothing to fold but case: most mail, at C speed
        return text.encode("ascii").translate(_ASCII_TOKENS).decode("ascii").split()
    out: list[str] = []
    for word in _WORD.findall(fold(text)):
        out.extend(_split_cjk(word))
    return out


def index_text(text: str) -> str:
    """What an engine indexes: the tokens joined by single spaces."""
    if text.isascii():  # tokens() without a str a token
        return b" ".join(text.encode("ascii").translate(_ASCII_TOKENS).split()).decode("ascii")
    return " ".join(tokens(text))


@dataclass(frozen=True)
class QueryTokens:
    """Tokens a query word must match as a phrase; ``prefix``: the last one is a prefix.

    A CJK run at the end of the word drops its trailing single character, which stored text
    only has where its own run ends; a lone CJK character matches as a prefix instead, so it
    finds every bigram it begins.
    """

    tokens: tuple[str, ...]
    prefix: bool = False


def query_tokens(text: str) -> QueryTokens:
    found = tokens(text)
    if not found:
        return QueryTokens(())
    last = found[-1]
    if len(last) == 1 and is_cjk(last):
        if len(found) >= 2 and len(found[-2]) == 2 and found[-2][1] == last:
            return QueryTokens(tuple(found[:-1]))
        return QueryTokens(tuple(found), prefix=True)
    return QueryTokens(tuple(found))
