"""What a hostile review of the search's word reading found: queries both stores must
answer alike, or refuse with InvalidQuery only."""

from __future__ import annotations

from pathlib import Path

import pytest

import p2pchat
from p2pchat import Message


@pytest.mark.parametrize("text", ["ab\ud800cd", "ab\udfff", '"ab\udc80cd"*', "x\x00"])
async def test_a_lone_surrogate_in_a_query_is_a_separator_in_both_stores(
    tmp_path: Path, text: str
) -> None:
    # Python's str may hold a lone surrogate (a terminal read with surrogateescape); the
    # SQLite store gave it to SQLite, which cannot encode it: UnicodeEncodeError.
    message = Message(id="m1", sender="alice", recipient="bob", sent_at=1.0, body="ab cd x")
    memory = p2pchat.MemoryMessageStore()
    sqlite = p2pchat.SqliteMessageStore(tmp_path / "m.sqlite3")
    await sqlite.start()
    try:
        for store in (memory, sqlite):
            await store.add_many([message])
        assert [m.id for m in await memory.search("bob", text)] == ["m1"]
        assert [m.id for m in await sqlite.search("bob", text)] == ["m1"]
    finally:
        await sqlite.close()


async def test_a_word_longer_than_fts5_keeps_is_cut_alike_in_both_stores(tmp_path: Path) -> None:
    # FTS5 keeps a word's first 32,768 bytes, of the body and of the query: the memory
    # store kept it whole, so a query the SQLite store answered found nothing there.
    bodies = ["a" * 40_000, "é" * 16_500 + "b", "x" + "€" * 11_000]
    memory = p2pchat.MemoryMessageStore()
    sqlite = p2pchat.SqliteMessageStore(tmp_path / "m.sqlite3")
    await sqlite.start()
    try:
        for store in (memory, sqlite):
            await store.add_many(
                [
                    Message(id=f"m{n}", sender="alice", recipient="bob", sent_at=1.0, body=body)
                    for n, body in enumerate(bodies)
                ]
            )
        queries = ["a" * 32_768, "a" * 50_000, "a" * 33_000 + "*", "é" * 16_384 + "c"]
        queries += ["é" * 16_400, "x" + "€" * 10_923, "x" + "€" * 10_922 + "*", "x" + "€" * 12_000]
        for query in queries:
            expected = [m.id for m in await sqlite.search("bob", query)]
            assert [m.id for m in await memory.search("bob", query)] == expected, len(query)
    finally:
        await sqlite.close()
