"""Highlighted snippets: where the query's words occur in the original text, HTML-escaped.

Matching runs on folded text (``search.text.fold``, so ``resume`` marks ``Résumé``) while the
output is cut from the original characters through an index map. Everything outside the
``<mark>`` tags is escaped, so a snippet is safe to insert as HTML.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from functools import lru_cache

from search.text import fold

__all__ = ["highlight"]

SCAN_CHARS = 50_000
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=65536)
def _fold_char(char: str) -> str:
    return fold(char)


def _folded(text: str) -> tuple[str, Sequence[int]]:
    """``text`` folded, and for each folded character the index of its original one."""
    if text.isascii():  # one character each: the map is the identity, no list needed
        return text.lower(), range(len(text))
    pieces: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = _fold_char(char)
        pieces.append(folded)
        origin.extend([index] * len(folded))
    return "".join(pieces), origin


def _spans(folded: str, origin: Sequence[int], needles: list[str]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for needle in needles:
        start = folded.find(needle)
        while start != -1 and len(spans) < 200:
            end = start + len(needle)
            spans.append((origin[start], origin[end - 1] + 1))
            start = folded.find(needle, end)
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _clean(text: str) -> str:
    return html.escape(_SPACE.sub(" ", text))


def highlight(text: str, words: list[str], *, width: int = 200) -> str:
    """A window of ``text`` around the first match of any of ``words``, matches in ``<mark>``.

    Without a match it is the start of the text; either way at most ``width`` characters.
    """
    text = text[:SCAN_CHARS]
    needles = sorted({n for w in words if (n := fold(w).strip())}, key=len, reverse=True)
    folded, origin = _folded(text)
    spans = _spans(folded, origin, needles) if needles else []
    start = 0
    if spans:
        start = max(0, spans[0][0] - width // 3)
        if start:
            space = text.rfind(" ", 0, start + 1)
            start = space + 1 if space > start - 20 else start
    end = min(len(text), start + width)
    out: list[str] = ["…" if start else ""]
    position = start
    for span_start, span_end in spans:
        if span_end <= start or span_start >= end:
            continue
        span_start, span_end = max(span_start, start), min(span_end, end)
        out.append(_clean(text[position:span_start]))
        out.append(f"<mark>{_clean(text[span_start:span_end])}</mark>")
        position = span_end
    out.append(_clean(text[position:end]))
    if end < len(text):
        out.append("…")
    return "".join(out).strip()
