"""Search queries, read once for every store: the SQLite store hands them to FTS5, the
memory store matches them itself with the same rules.

A query is terms, all of which a message must hold (AND). A term is a word (``hello``),
a word's beginning (``hel*``) or a phrase in double quotes (``"hello world"``, the words
next to each other in that order; ``"hello wor"*``: its last word a beginning). Case and
accents are ignored. A word is a run of letters and digits as FTS5's ``unicode61``
tokeniser reads them, in the memory store too (``Folding`` asks SQLite how it reads each
character); ``hello-world`` is the phrase ``"hello world"``. Nothing else is syntax:
``AND``, ``OR``, ``NEAR`` or ``body:`` are words like any other, so a user's text never
reaches FTS5 as an expression of its own. What cannot be read (a quote left open, a
``*`` inside a word, no word at all) raises InvalidQuery.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import InvalidQuery

__all__ = ["Query", "Term", "located_words", "parse", "search_spans", "words"]

_CHUNK = re.compile(r'"([^"]*)"(\*?)|([^\s"]+)')
# What SQLite cannot be given in a query: a NUL ends FTS5's reading of it ("unterminated
# string"), a lone surrogate cannot be encoded. Both separate words (Folding).
_UNSAYABLE = re.compile("[\x00\ud800-\udfff]")
_WORD_BYTES = 32_768  # FTS5_MAX_TOKEN_SIZE: of a longer word FTS5 keeps these bytes only


def _cut(word: str) -> str:
    """``word`` as FTS5 keeps it: its first ``_WORD_BYTES`` (UTF-8), a character cut
    in two kept as its bytes (surrogateescape), so that body and query cut alike."""
    if len(word) * 4 <= _WORD_BYTES:
        return word
    return word.encode()[:_WORD_BYTES].decode("utf-8", "surrogateescape")


class Folding:
    """How FTS5's ``unicode61`` tokeniser, with ``remove_diacritics 2`` (the index's,
    ``schema/messages-5.sql``), sees each character: as a separator, or as part of a word
    folded to what (case and accents: a lowercase letter, or nothing for a combining
    accent). The tokeniser decides character by character, so that is all a scan needs
    to find exactly the words the index holds.

    Asked of SQLite itself, rather than rebuilt from Python's ``unicodedata``, whose
    Unicode version and folding rules differ (``ß``, Greek accents, ligatures): each
    character once, the new ones of a text in one statement, kept for next time (up to
    ``KEEP`` of them: a text of strange characters cannot make it grow without bound)."""

    TOKENIZE = "unicode61 remove_diacritics 2"
    KEEP = 1 << 17

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # Each character known: what it folds to, None if it separates; and the same
        # for str.translate (" ": it separates). Replaced together, never half.
        self._tables: tuple[dict[str, str | None], dict[int, str]] = ({}, {})

    def table(self, text: str) -> dict[str, str | None]:
        """A table that holds each character of ``text``: None if it is a separator,
        else what it folds to (``""``: nothing, a combining accent)."""
        return self._learn(text)[0]

    def words(self, text: str) -> list[str]:
        """The words of ``text``, folded: each character translated at C speed (a
        memory store's search reads every body)."""
        spaced = self._learn(text)[1]
        found = [word for word in text.translate(spaced).split(" ") if word]
        return [_cut(word) for word in found] if len(text) * 4 > _WORD_BYTES else found

    def _learn(self, text: str) -> tuple[dict[str, str | None], dict[int, str]]:
        """The tables, holding each character of ``text``."""
        tables = self._tables
        if set(text) <= tables[0].keys():  # (a set against a dict: it would copy the dict)
            return tables
        with self._lock:
            known, spaced = self._tables
            new = set(text).difference(known)
            if len(known) + len(new) > self.KEEP:
                known, spaced = {}, {}  # (one text of more than KEEP is held whole)
                new = set(text)
            told = self._ask(sorted(new))
            spaced.update({ord(c): " " if f is None else f for c, f in told.items()})
            known.update(told)
            self._tables = (known, spaced)
            return known, spaced

    def _ask(self, characters: list[str]) -> dict[str, str | None]:
        """Each of ``characters`` between two ``q``, through the tokeniser: one word,
        ``q`` its folding ``q``, if it is part of a word; two ``q`` if it separates."""
        told: dict[str, str | None] = {}
        asked = []
        for character in characters:
            if "\ud800" <= character <= "\udfff":  # a lone surrogate: SQLite takes none
                told[character] = None
            else:
                asked.append(character)
        if not asked:
            return told
        if self._db is None:
            self._db = sqlite3.connect(":memory:", check_same_thread=False)
            self._db.execute(f"CREATE VIRTUAL TABLE t USING fts5 (x, tokenize = '{self.TOKENIZE}')")
            self._db.execute("CREATE VIRTUAL TABLE v USING fts5vocab (t, instance)")
        with self._db:
            self._db.execute(
                "INSERT INTO t (rowid, x) VALUES (1, ?)", (" ".join(f"q{c}q" for c in asked),)
            )
            words = [row[0] for row in self._db.execute("SELECT term FROM v ORDER BY offset")]
            self._db.execute("DELETE FROM t")
        at = 0
        for character in asked:
            if words[at] == "q":  # "q", then "q": it separates them
                told[character] = None
                at += 2
            else:
                told[character] = words[at][1:-1]
                at += 1
        return told


_FOLDING = Folding()


def words(text: str) -> list[str]:
    """The words of ``text`` as the index sees them (``Folding``)."""
    return _FOLDING.words(text)


def located_words(text: str) -> list[tuple[str, int, int]]:
    """The words of ``text`` as the index sees them (``Folding``), each with where it
    stands in ``text`` (start, end): to mark a match where it was typed."""
    table = _FOLDING.table(text)
    found: list[tuple[str, int, int]] = []
    current: list[str] = []
    start = 0
    for index, character in enumerate(text):
        folded = table[character]
        if folded is not None:
            if not current:
                start = index
            current.append(folded)
        elif current:
            found.append(("".join(current), start, index))
            current = []
    if current:
        found.append(("".join(current), start, len(text)))
    return [(_cut(word), begin, end) for word, begin, end in found if word]


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
        # What SQLite cannot be given (_UNSAYABLE) separates words, as a space does.
        quoted = (f'"{_UNSAYABLE.sub(" ", t.text)}"{"*" if t.prefix else ""}' for t in self.terms)
        return " ".join(quoted)


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
