"""Search and paged history, over both message stores (as in test_store.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

import p2pchat
import p2pchat.stores
from p2pchat import InvalidQuery, Message, MessageStore, P2PChatError, StoreError
from p2pchat.stores import sqlite_db

SCHEMA = Path(p2pchat.stores.__file__).with_name("schema")


def said(n: int, body: str, sender: str = "alice", recipient: str = "bob") -> Message:
    return Message(id=f"m{n}", sender=sender, recipient=recipient, body=body, sent_at=1000.0 + n)


@pytest.fixture(params=["memory", "sqlite"])
async def messages(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageStore]:
    store: MessageStore = (
        p2pchat.MemoryMessageStore()
        if request.param == "memory"
        else p2pchat.SqliteMessageStore(tmp_path / "messages.sqlite3")
    )
    await store.start()
    yield store
    await store.close()


async def found(store: MessageStore, text: str, **options: object) -> list[str]:
    return [m.id for m in await store.search("alice", text, **options)]  # type: ignore[arg-type]


async def test_search_ignores_case_and_accents(messages: MessageStore) -> None:
    await messages.add_many(
        [said(1, "Café au lait"), said(2, "CAFE noir"), said(3, "thé"), said(4, "Ça va? Über!")]
    )
    assert await found(messages, "cafe") == ["m2", "m1"]  # newest first
    assert await found(messages, "CAFÉ") == ["m2", "m1"]
    assert await found(messages, "the") == ["m3"]
    assert await found(messages, "ca uber") == ["m4"]


async def test_search_prefix_phrase_and_every_word(messages: MessageStore) -> None:
    await messages.add_many(
        [
            said(1, "hello world"),
            said(2, "world, hello"),
            said(3, "help!"),
            said(4, "Hello, World: again"),
            said(5, "shell"),
        ]
    )
    assert await found(messages, "hel*") == ["m4", "m3", "m2", "m1"]  # not "shell"
    assert await found(messages, '"hello world"') == ["m4", "m1"]  # next to each other
    assert await found(messages, "world hello") == ["m4", "m2", "m1"]  # every word, any order
    assert await found(messages, '"hello wor"*') == ["m4", "m1"]
    assert await found(messages, "hello-world") == ["m4", "m1"]  # a phrase, as FTS5 reads it
    assert await found(messages, "hello absent") == []
    assert await found(messages, "wor") == []  # a word, not a part of one


async def test_search_operators_are_just_words(messages: MessageStore) -> None:
    await messages.add_many([said(1, "cats OR dogs"), said(2, "cats"), said(3, "body: NEAR")])
    assert await found(messages, "cats OR dogs") == ["m1"]  # AND of three words
    assert await found(messages, "body: NEAR") == ["m3"]
    assert await found(messages, "NOT") == []


async def test_search_by_user_and_limit(messages: MessageStore) -> None:
    await messages.add_many(
        [
            said(1, "news one"),
            said(2, "news two", sender="carol", recipient="alice"),
            said(3, "news three", recipient="carol"),
            said(4, "news four", sender="bob", recipient="alice"),
            said(5, "news five", sender="bob", recipient="carol"),  # not alice's
        ]
    )
    assert await found(messages, "news") == ["m4", "m3", "m2", "m1"]
    assert await found(messages, "news", contact="bob") == ["m4", "m1"]
    assert await found(messages, "news", contact="carol") == ["m3", "m2"]
    assert await found(messages, "news", limit=2) == ["m4", "m3"]
    assert await found(messages, "news", limit=0) == []
    assert [m.id for m in await messages.search("carol", "news")] == ["m5", "m3", "m2"]


@pytest.mark.parametrize(
    "text", ['"hello world', 'say "hi" "there', "he*llo", "*", "", "   ", "!!! ??"]
)
async def test_a_query_that_cannot_be_read_is_invalid_query(
    messages: MessageStore, text: str
) -> None:
    await messages.add(said(1, "hello world"))
    with pytest.raises(InvalidQuery) as caught:
        await messages.search("alice", text)
    assert isinstance(caught.value, P2PChatError)
    assert isinstance(caught.value, ValueError)
    assert await found(messages, "hello") == ["m1"]  # and the store goes on


async def test_ten_thousand_messages_page_backwards_each_exactly_once(
    messages: MessageStore,
) -> None:
    # Both directions, times out of insertion order, ties on sent_at (then the id decides),
    # and messages with others mixed in.
    batch = []
    for n in range(10_000):
        sender, recipient = ("alice", "bob") if n % 3 else ("bob", "alice")
        at = 5000.0 + (n * 7919) % 10_000 // 2  # two messages per instant, shuffled
        batch.append(
            Message(id=f"x{n:05}", sender=sender, recipient=recipient, body="b", sent_at=at)
        )
        if n % 10 == 0:
            batch.append(said(100_000 + n, "other", recipient="carol"))
    for start in range(0, len(batch), 1000):
        await messages.add_many(batch[start : start + 1000])
    seen: list[Message] = []
    page = await messages.history("alice", "bob", limit=333)
    while page:
        seen[:0] = page
        assert [m.id for m in page] == [m.id for m in sorted(page, key=ordered)]
        page = await messages.history("alice", "bob", before=page[0], limit=333)
    assert len(seen) == 10_000
    assert len({m.id for m in seen}) == 10_000
    assert seen == sorted(seen, key=ordered)
    assert seen == await messages.history("bob", "alice")  # the same order unpaged


def ordered(message: Message) -> tuple[float, str]:
    return (message.sent_at, message.id)


async def test_search_is_newest_sent_first_whatever_the_order_of_arrival(
    messages: MessageStore,
) -> None:
    # 12,000 messages holding one word, over several of the SQLite store's blocks of
    # seqs: times shuffled against arrival, the latest stored first (mail that arrives
    # early from a fast clock) and the oldest stored last, ties on sent_at.
    batch = [
        Message(
            id=f"w{n:05}",
            sender="alice" if n % 2 else "bob",
            recipient="bob" if n % 2 else "alice",
            body=f"common word{n % 7}",
            sent_at=10_000.0 + (n * 7919) % 12_000 // 2,
        )
        for n in range(12_000)
    ]
    latest = msgspec.structs.replace(said(1, "common, the latest", "bob", "alice"), sent_at=1e5)
    oldest = msgspec.structs.replace(said(2, "common, the oldest"), sent_at=1.0)
    batch = [latest, *batch, oldest]
    for start in range(0, len(batch), 2000):
        await messages.add_many(batch[start : start + 2000])
    newest = sorted(batch, key=lambda m: (m.sent_at, m.id, m.sender), reverse=True)
    for limit in (1, 50, 700):
        got = await messages.search("alice", "common", limit=limit)
        assert [m.id for m in got] == [m.id for m in newest[:limit]]
    got = await messages.search("alice", "word3", limit=40)
    assert [m.id for m in got] == [m.id for m in newest if m.body.endswith("word3")][:40]


async def test_a_page_before_the_first_is_empty_and_arrivals_do_not_shift_pages(
    messages: MessageStore,
) -> None:
    await messages.add_many([said(n, f"b{n}") for n in range(10)])
    last = await messages.history("alice", "bob", limit=4)
    assert [m.id for m in last] == ["m6", "m7", "m8", "m9"]
    await messages.add(said(20, "new"))  # arrives while the user scrolls back
    page = await messages.history("alice", "bob", before=last[0], limit=4)
    assert [m.id for m in page] == ["m2", "m3", "m4", "m5"]
    first = await messages.history("alice", "bob", before=page[0], limit=4)
    assert [m.id for m in first] == ["m0", "m1"]
    assert await messages.history("alice", "bob", before=first[0], limit=4) == []


# SQLite only: the index.


def index_rows(db: sqlite3.Connection) -> int:
    """The bodies the full-text index holds, read from the index itself (fts5vocab)."""
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.messages_words"
        " USING fts5vocab(main, messages_fts, instance)"
    )
    return int(db.execute("SELECT count(DISTINCT doc) FROM temp.messages_words").fetchone()[0])


def indexed(path: Path) -> tuple[int, int]:
    """(messages, bodies in the full-text index)."""
    with sqlite3.connect(path) as db:
        count = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        return int(count), index_rows(db)


async def test_the_index_is_written_in_the_messages_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Of a write that is not one of a burst: each write here stands for one at a chat's
    # pace. (Writes in a burst share index writes: test_index_tail.py.)
    monkeypatch.setattr(sqlite_db, "BURST", 0.0)
    path = tmp_path / "m.sqlite3"
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    loop = asyncio.get_running_loop()
    inserted, release = asyncio.Event(), threading.Event()
    inside: list[int] = []

    def failing_job(db: sqlite3.Connection) -> None:  # on the writer's thread
        db.execute(
            "INSERT INTO messages (id, sender, recipient, body, sent_at) VALUES (?, ?, ?, ?, ?)",
            ("half", "alice", "bob", "unwritten words", 1.0),
        )
        store._finish(db, False)  # what ends the transaction, here before it fails
        inside.append(index_rows(db))
        loop.call_soon_threadsafe(inserted.set)
        release.wait(10)
        raise sqlite3.OperationalError("it fails after all")

    try:
        await store.add_many([said(n, f"word{n} common") for n in range(100)])
        assert indexed(path) == (100, 100)
        writing = asyncio.create_task(store._database.write(failing_job))
        await inserted.wait()
        assert inside == [101]  # indexed by the transaction that inserts it, in it
        assert await store.search("alice", "unwritten") == []  # not committed: not seen
        release.set()
        with pytest.raises(StoreError, match="it fails after all"):
            await writing
        assert indexed(path) == (100, 100)  # rolled back together
        assert await store.search("alice", "unwritten") == []
        # An insert that fails (a trigger refuses it) leaves no index row either.
        with sqlite3.connect(path) as other:
            other.execute(
                "CREATE TRIGGER no_bodies BEFORE INSERT ON messages WHEN NEW.body = 'boom'"
                " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        with pytest.raises(StoreError, match="disk says no"):
            await store.add_many([said(200, "fine words"), said(201, "boom")])
        assert indexed(path) == (100, 100)
        assert await store.search("alice", "fine") == []
        assert len(await store.search("alice", "common", limit=1000)) == 100
        # If indexing fails, the message is not stored either.
        with sqlite3.connect(path) as other:
            other.execute("DROP TRIGGER no_bodies")
            other.execute(
                "CREATE TRIGGER no_index BEFORE INSERT ON messages_latest"
                " BEGIN SELECT RAISE(ABORT, 'index says no'); END"
            )
        with pytest.raises(StoreError, match="index says no"):
            await store.add(said(300, "lonely words"))
        assert indexed(path) == (100, 100)
        with sqlite3.connect(path) as other:
            other.execute("DROP TRIGGER no_index")
        # A row any write stores (not add_many's) is indexed by its transaction too.

        def other_job(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO messages (id, sender, recipient, body, sent_at)"
                " VALUES ('g1', 'alice', 'team', 'group words', 5.0)"
            )

        await store._database.write(other_job)
        assert indexed(path) == (101, 101)
        assert [m.id for m in await store.search("alice", "group")] == ["g1"]
    finally:
        release.set()
        await store.close()


async def test_a_store_made_by_the_version_4_schema_is_migrated_and_indexed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # what today's main makes, with messages in it
        for version in (1, 2, 3, 4):
            db.executescript((SCHEMA / f"messages-{version}.sql").read_text())
        db.execute("PRAGMA user_version = 4")
        db.executemany(
            "INSERT INTO messages (id, sender, recipient, body, sent_at, shipped)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("a1", "alice", "bob", "Déjà vu, old friend", 1.0, 1),
                ("b1", "bob", "alice", "an old reply", 2.0, 1),
                ("a2", "alice", "carol", "unrelated", 3.0, 0),
            ],
        )
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        assert [m.id for m in await store.search("alice", "old")] == ["b1", "a1"]
        assert [m.id for m in await store.search("alice", "deja")] == ["a1"]
        assert await store.add(said(9, "a new old one")) is True
        assert [m.id for m in await store.search("alice", "old", contact="bob")] == [
            "m9",
            "b1",
            "a1",
        ]
        history = await store.history("alice", "bob")
        assert [(m.id, m.shipped) for m in history] == [("a1", True), ("b1", True), ("m9", False)]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 8  # 4 -> 5 -> 6 -> 7 -> 8
    assert indexed(path) == (4, 4)


async def test_a_store_made_by_the_version_5_schema_takes_groups_and_keeps_its_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "search.sqlite3"
    with sqlite3.connect(path) as db:  # what the search's version makes, indexed
        for version in (1, 2, 3, 4, 5):
            db.executescript((SCHEMA / f"messages-{version}.sql").read_text())
        db.execute("PRAGMA user_version = 5")
        db.executemany(
            "INSERT INTO messages (id, sender, recipient, body, sent_at, shipped)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("a1", "alice", "bob", "picnic on Sunday", 1.0, 1),
                ("b1", "bob", "alice", "ok", 2.0, 1),
            ],
        )
        db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
        db.execute("UPDATE messages_indexed SET up_to = 2")
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        assert [m.id for m in await store.search("alice", "picnic")] == ["a1"]
        await store.add_group_messages([in_group(3, "picnic in the group")], ["bob", "carol"])
        assert [m.id for m in await store.search("alice", "picnic")] == ["g3", "a1"]
        assert [m.group for m in await store.group_history(GROUP)] == [GROUP]
        assert [m.id for m in await store.history("alice", "bob")] == ["a1", "b1"]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 8
    assert indexed(path) == (3, 3)


async def test_a_store_made_by_the_version_7_schema_merges_later_under_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "search.sqlite3"
    with sqlite3.connect(path) as db:  # what the idle merging's version makes, indexed
        for version in range(1, 8):
            db.executescript((SCHEMA / f"messages-{version}.sql").read_text())
        db.execute("PRAGMA user_version = 7")
        db.execute(
            "INSERT INTO messages (id, sender, recipient, body, sent_at, shipped)"
            " VALUES ('a1', 'alice', 'bob', 'picnic on Sunday', 1.0, 1)"
        )
        db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
        db.execute("UPDATE messages_indexed SET up_to = 1")
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        assert await store.add(said(2, "picnic again"))
        assert [m.id for m in await store.search("alice", "picnic")] == ["m2", "a1"]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 8
        crisis = db.execute("SELECT v FROM messages_fts_config WHERE k = 'crisismerge'")
        assert crisis.fetchone()[0] == 512
    assert indexed(path) == (2, 2)


GROUP = "g" + "1" * 32


def in_group(n: int, body: str, sender: str = "alice") -> Message:
    """A message of GROUP (its recipient is the group, sent or received)."""
    return Message(
        id=f"g{n}",
        sender=sender,
        recipient=GROUP,
        body=body,
        sent_at=1000.0 + n,
        group=GROUP,
        group_version=1,
    )


async def test_search_finds_group_messages_sent_and_received(messages: MessageStore) -> None:
    await messages.add_many([said(1, "lunch at noon"), said(2, "lunch? no", "bob", "alice")])
    await messages.add_group_messages([in_group(3, "group lunch plans")], ["bob", "carol"])
    await messages.add_many(
        [in_group(4, "Lunch, yes", "carol"), in_group(5, "no lunch for me", "bob")], unread=True
    )
    await messages.add_many([said(6, "lunch elsewhere", "carol", "dave")])  # not alice's
    assert await found(messages, "lunch") == ["g5", "g4", "g3", "m2", "m1"]
    # With a contact: the talk with them, and what they sent to a group.
    assert await found(messages, "lunch", contact="carol") == ["g4"]
    assert await found(messages, "lunch", contact="bob") == ["g5", "m2", "m1"]
    assert await found(messages, "plans", contact="bob") == []  # ours, to the group
    (match,) = await messages.search("alice", "yes")
    assert (match.group, match.recipient, match.sender) == (GROUP, GROUP, "carol")
    # Still apart from the one-to-one history and contacts.
    assert [m.id for m in await messages.history("alice", "bob")] == ["m1", "m2"]
    assert await messages.correspondents("alice") == ["bob"]


async def test_peer_search_and_history_before(tmp_path: Path) -> None:
    store = p2pchat.MemoryMessageStore()
    await store.add_many(
        [said(n, f"note {n}", *(("alice", "bob") if n % 2 else ("bob", "alice"))) for n in range(6)]
    )
    peer = p2pchat.Peer("alice", store=store)  # not started: the store is all it needs here
    assert [m.id for m in await peer.search("note", "bob", 2)] == ["m5", "m4"]
    with pytest.raises(p2pchat.InvalidName):
        await peer.search("note", user="not a name")
    with pytest.raises(InvalidQuery):
        await peer.search('"note')
    page = await peer.history("bob", limit=2)
    assert [m.id for m in await peer.history("bob", page[0], 3)] == ["m1", "m2", "m3"]


def test_search_spans_point_at_the_match_as_typed() -> None:
    body = "Un CAFÉ, e\u0301cole; Hello  World! 👋 hello worlds"
    spans = p2pchat.search_spans('cafe "hello wor"* ecole', body)
    assert [body[start:end] for start, end in spans] == [
        "CAFÉ",
        "e\u0301cole",  # an accent written apart is part of its word
        "Hello  World",
        "hello worlds",
    ]
    assert p2pchat.search_spans("absent", body) == []
    with pytest.raises(InvalidQuery):
        p2pchat.search_spans('"open', body)
