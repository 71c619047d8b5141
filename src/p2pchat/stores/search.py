"""Search queries, read once for every store: the SQLite store hands them to FTS5, the
memory store matches them itself with the same rules.

A query is terms, all of which a message must hold (AND). A term is a word (``hello``),
a word's beginning (``hel*``) or a phrase in double quotes (``"hello world"``, the words
next to each other in that order; ``"hello wor"*``: its last word a beginning). Case and
accents are ignored. A word is a run of letters and digits (FTS5's ``unicode61``
tokeniser); ``hello-world`` is the phrase ``"hello world"``. Nothing else is syntax:
``AND``, ``OR``, ``NEAR`` or ``body:`` are words like any other, so a user's text never
reaches FTS5 as an expression of its own. What cannot be read (a quote left open, a
``*`` inside a word, no word at all) raises InvalidQuery.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import InvalidQuery

__all__ = ["Query", "Term", "located_words", "parse", "search_spans", "words"]

_CHUNK = re.compile(r'"([^"]*)"(\*?)|([^\s"]+)')


def _is_word_character(character: str) -> bool:
    category = unicodedata.category(character)
    return category[0] in "LN" or category == "Co"


def words(text: str) -> list[str]:
    """The words of ``text`` as the index sees them: accents stripped, case folded."""
    plain = "".join(
        c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)
    ).casefold()
    found: list[str] = []
    current: list[str] = []
    for character in plain:
        if _is_word_character(character):
            current.append(character)
        elif current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    return found


def _fold(character: str) -> str:
    """One character as the index sees it: accents stripped, case folded."""
    decomposed = unicodedata.normalize("NFD", character)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def located_words(text: str) -> list[tuple[str, int, int]]:
    """The words of ``text`` as ``words()`` finds them, each with where it stands in
    ``text`` (start, end): to mark a match where it was typed."""
    found: list[tuple[str, int, int]] = []
    current: list[str] = []
    start = 0
    for index, character in enumerate(text):
        folded = _fold(character)
        if not folded:  # a lone combining mark: dropped, the word goes on
            continue
        if all(_is_word_character(c) for c in folded):
            if not current:
                start = index
            current.append(folded)
            continue
        if current:
            found.append(("".join(current), start, index))
            current = []
    if current:
        found.append(("".join(current), start, len(text)))
    return found


@dataclass(frozen=True)
class Term:
    """Words that must appear next to each other, in order; ``prefix``: the last one is
    only a word's beginning. ``text``: as typed, for FTS5 to fold the same way."""

    words: tuple[str, ...]
    prefix: bool
    text: str

    def found_in(self, body: list[str]) -> bool:
        """Whether these words are among ``body``'s (the words of a message)."""
        return next(self.places(body), None) is not None

    def places(self, body: list[str]) -> Iterator[int]:
        """Where in ``body`` (the words of a message) these words start, each time."""
        *head, last = self.words
        size = len(self.words)
        for start in range(len(body) - size + 1):
            end = start + size - 1
            if body[start:end] != head:
                continue
            if body[end] == last or (self.prefix and body[end].startswith(last)):
                yield start


@dataclass(frozen=True)
class Query:
    """A query read from what a user typed: every term must match."""

    terms: tuple[Term, ...]

    def matches(self, body: str) -> bool:
        """Whether a message of this ``body`` answers the query (the memory store's scan)."""
        found = words(body)
        return all(term.found_in(found) for term in self.terms)

    def spans(self, body: str) -> list[tuple[int, int]]:
        """Where in ``body`` the query matches, as (start, end) offsets, in order and
        apart (overlaps joined): what a front end marks."""
        located = located_words(body)
        found = [word for word, _, _ in located]
        spans = sorted(
            (located[start][1], located[start + len(term.words) - 1][2])
            for term in self.terms
            for start in term.places(found)
        )
        joined: list[tuple[int, int]] = []
        for start, end in spans:
            if joined and start <= joined[-1][1]:
                joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
            else:
                joined.append((start, end))
        return joined

    @property
    def fts5(self) -> str:
        """The query as an FTS5 expression: each term a quoted string (no operator of its
        own can come from the text), the terms side by side (AND)."""
        return " ".join(f'"{t.text}"{"*" if t.prefix else ""}' for t in self.terms)


def parse(text: str) -> Query:
    """Read a query; InvalidQuery if it cannot be read."""
    if text.count('"') % 2:
        raise InvalidQuery(f"a quote is left open in {text!r}")
    terms = []
    for match in _CHUNK.finditer(text):
        phrase, star, bare = match.groups()
        if bare is not None:
            prefix = bare.endswith("*")
            typed = bare[:-1] if prefix else bare
            if "*" in typed:
                raise InvalidQuery(f"a * may only end a word, in {text!r}")
        else:
            typed, prefix = phrase, bool(star)
        if found := words(typed):
            terms.append(Term(words=tuple(found), prefix=prefix, text=typed))
    if not terms:
        raise InvalidQuery(f"no word to search for in {text!r}")
    return Query(terms=tuple(terms))


def search_spans(text: str, body: str) -> list[tuple[int, int]]:
    """Where the search ``text`` matches in ``body``, as (start, end) offsets in order:
    for a front end to mark what a search found. InvalidQuery as ``parse``."""
    return parse(text).spans(body)
