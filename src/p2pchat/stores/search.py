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
    character once, the new ones of a text in one statement, and kept for next time,
    up to ``KEEP`` characters. A text that would teach more than ``LEARN`` new ones at
    once, or more than there is room for, is read on its own and teaches nothing: a
    hostile body of thousands of strange characters costs about a millisecond each time
    it is read (through FTS5 itself), and cannot push out what the others use."""

    TOKENIZE = "unicode61 remove_diacritics 2"
    KEEP = 1 << 15
    LEARN = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # Each character known: what it folds to, None if it separates; and the same
        # for str.translate (" ": it separates). They only grow, the second first.
        self._known: dict[str, str | None] = {}
        self._spaced: dict[int, str] = {}

    def table(self, text: str) -> dict[str, str | None]:
        """A table that holds each character of ``text``: None if it is a separator,
        else what it folds to (``""``: nothing, a combining accent)."""
        if self._learned(text):
            return self._known
        with self._lock:  # read on its own: a table of its characters alone
            known = self._known
            table = {c: known[c] for c in set(text) if c in known}
            table.update(self._ask(sorted(set(text).difference(table))))
            return table

    def words(self, text: str) -> list[str]:
        """The words of ``text``, folded: each character translated at C speed (a
        memory store's search reads every body)."""
        if not self._learned(text):
            return self._read(text)
        found = [word for word in text.translate(self._spaced).split(" ") if word]
        return [_cut(word) for word in found] if len(text) * 4 > _WORD_BYTES else found

    def _learned(self, text: str) -> bool:
        """Whether the tables hold each character of ``text``, once they have learnt
        what it teaches; False if it is to be read on its own."""
        characters = set(text)
        if characters <= self._known.keys():  # (a set against a dict would copy the dict)
            return True
        with self._lock:
            new = characters.difference(self._known)
            if len(new) > self.LEARN or len(self._known) + len(new) > self.KEEP:
                return False
            told = self._ask(sorted(new))
            self._spaced.update({ord(c): " " if f is None else f for c, f in told.items()})
            self._known.update(told)
            return True

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(":memory:", check_same_thread=False)
            # A word FTS5 cut at _WORD_BYTES may end inside a character: kept as _cut does.
            self._db.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
            self._db.execute(f"CREATE VIRTUAL TABLE t USING fts5 (x, tokenize = '{self.TOKENIZE}')")
            self._db.execute("CREATE VIRTUAL TABLE v USING fts5vocab (t, instance)")
        return self._db

    def _tokenize(self, text: str) -> list[str]:
        """The words FTS5 makes of ``text``, in order (with the lock held)."""
        db = self._connection()
        with db:
            db.execute("INSERT INTO t (rowid, x) VALUES (1, ?)", (_UNSAYABLE.sub(" ", text),))
            words = [row[0] for row in db.execute("SELECT term FROM v ORDER BY offset")]
            db.execute("DELETE FROM t")
        return words

    def _read(self, text: str) -> list[str]:
        """The words of ``text`` through FTS5 itself, learning nothing."""
        with self._lock:
            return self._tokenize(text)

    def _ask(self, characters: list[str]) -> dict[str, str | None]:
        """Each of ``characters`` between two ``q``, through the tokeniser: one word,
        ``q`` its folding ``q``, if it is part of a word; two ``q`` if it separates
        (with the lock held)."""
        told: dict[str, str | None] = {}
        asked = []
        for character in characters:
            if _UNSAYABLE.match(character):  # a NUL, a lone surrogate: separators
                told[character] = None
            else:
                asked.append(character)
        if not asked:
            return told
        words = self._tokenize(" ".join(f"q{c}q" for c in asked))
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
