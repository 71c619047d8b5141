"""The memory store finds the words the SQLite store's index holds, in any script: both
read a body with FTS5's own tokeniser's rules (``stores.search.Folding``), so a query
has the same answers in both, where Python's own Unicode folding once differed (``ß``,
Greek accents, ligatures, marks inside words)."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import sys
from pathlib import Path

import pytest

import p2pchat
from p2pchat import Message
from p2pchat.stores.search import Folding, located_words, words

# Characters where folding rules part ways: accents precomposed and combining, Greek
# with tonos and final sigma, German sharp s, Turkish dotted and dotless i, ligatures,
# full-width and circled forms, Cyrillic, CJK, Arabic and Hebrew marks, emoji with
# modifiers and joiners, digits of other scripts, private use, controls, lone marks.
HARD = (
    "aAeEéÉèêëÈçÇñÑøØåÅæÆœŒ"
    "e\u0301a\u0308o\u0303"
    "άέήίόύώΆΈΉΊΌΎΏΐΰσςΣ"
    "ßẞ"
    "\u0130\u0131Ii"  # Turkish capital dotted I, small dotless i
    "ﬁﬂﬀ"
    "ＡＢａｂ１２ⓐⒶ"
    "ёЁйЙжЖ"
    "漢字かなカナ한글"
    "\u05d0\u05b8\u0627\u064e"
    "😀👍🏽👩\u200d💻\ufe0f"
    "٣३"
    "\ue000"
    "\x00\t\n\u200b\u00ad"
    "\u0301\u0308"
    "-'_.,!?\""
)


def fts5_words(text: str) -> list[str]:
    """The words FTS5's index holds for ``text``, in order."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.execute(f"CREATE VIRTUAL TABLE t USING fts5 (x, tokenize = '{Folding.TOKENIZE}')")
        db.execute("CREATE VIRTUAL TABLE v USING fts5vocab (t, instance)")
        db.execute("INSERT INTO t (rowid, x) VALUES (1, ?)", (text,))
        return [row[0] for row in db.execute("SELECT term FROM v ORDER BY offset")]


def strange_text(rng: random.Random) -> str:
    return "".join(rng.choice(HARD + "    abcxyz") for _ in range(rng.randint(1, 40)))


def test_words_are_the_indexs_words_in_any_script() -> None:
    rng = random.Random(11)
    for _ in range(2_000):
        text = strange_text(rng)
        assert words(text) == fts5_words(text), ascii(text)
    # Every character this Python knows of the first three planes, a thousand at a
    # time, each between two words: how each is told apart and folded.
    characters = [chr(c) for c in range(0x30000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(characters), 1_000):
        text = " ".join(f"x{c}x" for c in characters[start : start + 1_000])
        assert words(text) == fts5_words(text), start


def test_where_each_word_stands_is_where_it_was_typed() -> None:
    text = "Straße, ΆΛΦΑ ﬁne e\u0301te 👍🏽ok"
    located = located_words(text)
    assert [word for word, _, _ in located] == fts5_words(text)
    for word, start, end in located:
        assert words(text[start:end]) == [word]


def test_what_it_keeps_is_bounded_and_strange_texts_push_nothing_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The table learns up to KEEP characters, at most LEARN from one text. A text that
    # would teach more, or more than there is room for, is read on its own (by FTS5
    # itself) and teaches nothing: hostile bodies of thousands of strange characters
    # cannot grow the table, nor push out what the others use (they once emptied it
    # over and over, and a memory store's search took seconds).
    monkeypatch.setattr(Folding, "KEEP", 300)
    folding = Folding()
    assert folding.words("Hello, Wörld") == ["hello", "world"]
    common = set(folding.table("Hello, Wörld"))
    cjk = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 300))
    assert folding.words(cjk) == fts5_words(cjk)  # more than LEARN: read on its own
    assert len(folding._known) == len(common)
    for start in range(0x0400, 0x0400 + 280, 20):  # twenty at a time: learnt, till full
        text = "".join(chr(c) for c in range(start, start + 20))
        assert folding.words(text) == fts5_words(text)
    assert len(folding._known) <= 300
    assert common <= folding._known.keys()
    hostile = "".join(chr(c) for c in range(0x10000, 0x10000 + 4_000))
    for _ in range(3):
        assert folding.words(hostile) == fts5_words(hostile)
        assert folding.words("hello " + hostile[:5]) == fts5_words("hello " + hostile[:5])
        table = folding.table(hostile)
        assert all(c in table for c in hostile)
        assert [w for w, _, _ in located_words("Hello, Wörld")] == ["hello", "world"]
    assert len(folding._known) <= 300
    assert common <= folding._known.keys()


async def test_both_stores_answer_queries_in_any_script_alike(tmp_path: Path) -> None:
    rng = random.Random(5)
    vocabulary = [strange_text(rng) for _ in range(60)] + ["Straße", "strasse", "ΆΛΦΑ", "άλφα"]
    memory = p2pchat.MemoryMessageStore()
    sqlite = p2pchat.SqliteMessageStore(tmp_path / "m.sqlite3")
    await sqlite.start()
    try:
        messages = [
            Message(
                id=f"m{n}", sender="alice", recipient="bob", sent_at=1000.0 + n,
                body=" ".join(rng.sample(vocabulary, 3)),
            )
            for n in range(300)
        ]  # fmt: skip
        for store in (memory, sqlite):
            await store.add_many(messages)
        queries = [w for w in vocabulary if words(w)] + ["strasse", "STRAẞE", "αλφα", "άλφα"]
        queries += [f'"{words(w)[0]}"*' for w in vocabulary if words(w)]
        compared = found = 0
        for query in queries:
            for text in (query, query.upper(), query.lower()):
                try:
                    expected = [m.id for m in await memory.search("bob", text, limit=500)]
                except p2pchat.InvalidQuery:
                    with pytest.raises(p2pchat.InvalidQuery):
                        await sqlite.search("bob", text)
                    continue
                assert [m.id for m in await sqlite.search("bob", text, limit=500)] == expected, (
                    ascii(text)
                )
                compared += 1
                found += bool(expected)
        assert compared > 150, compared
        assert found > 100, found
    finally:
        await sqlite.close()


def test_a_lone_surrogate_is_a_separator() -> None:
    assert words("ab\ud800cd") == ["ab", "cd"]
    assert sys.maxunicode == 0x10FFFF
