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
from dataclasses import dataclass

from ..errors import InvalidQuery

__all__ = ["Query", "Term", "parse", "words"]

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


@dataclass(frozen=True)
class Term:
    """Words that must appear next to each other, in order; ``prefix``: the last one is
    only a word's beginning. ``text``: as typed, for FTS5 to fold the same way."""

    words: tuple[str, ...]
    prefix: bool
    text: str

    def found_in(self, body: list[str]) -> bool:
        """Whether these words are among ``body``'s (the words of a message)."""
        *head, last = self.words
        size = len(self.words)
        for start in range(len(body) - size + 1):
            end = start + size - 1
            if body[start:end] != head:
                continue
            if body[end] == last or (self.prefix and body[end].startswith(last)):
                return True
        return False


@dataclass(frozen=True)
class Query:
    """A query read from what a user typed: every term must match."""

    terms: tuple[Term, ...]

    def matches(self, body: str) -> bool:
        """Whether a message of this ``body`` answers the query (the memory store's scan)."""
        found = words(body)
        return all(term.found_in(found) for term in self.terms)

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
