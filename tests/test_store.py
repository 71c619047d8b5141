"""Each store interface tested once, over every backend."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import p2pchat
import p2pchat.stores
from p2pchat import Mailbox, MailboxItem, Message, MessageStore, StoreError, UserStore
from p2pchat.cluster.redis_store import RedisMailbox, RedisUserStore
from p2pchat.store import new_id


def message(n: int, sender: str = "alice", recipient: str = "bob") -> Message:
    return Message(
        id=f"m{n}", sender=sender, recipient=recipient, body=f"body {n}", sent_at=1000.0 + n
    )


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


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def users(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    store: UserStore
    if request.param == "redis":  # a real redis-server, under this test's own prefix
        store = RedisUserStore(
            request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix")
        )
    elif request.param == "memory":
        store = p2pchat.MemoryUserStore()
    else:
        store = p2pchat.SqliteUserStore(tmp_path / "users.sqlite3")
    await store.start()
    yield store
    await store.close()


def test_new_ids_are_uuid7_in_the_order_they_were_made() -> None:
    # The time in ms, then 74 random bits (RFC 9562): the store's (id, sender) index grows
    # at its end, and an id is still not to be guessed.
    made = [new_id() for _ in range(2000)]
    now_ms = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 <= now_ms:
        pass  # the next millisecond
    later = Message.new("alice", "bob", "hi").id
    assert len(set(made)) == len(made)
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in made)
    assert max(made) < later
    assert abs(int(later.replace("-", "")[:12], 16) - now_ms) < 1000
    assert len({i[19:] for i in made}) == len(made)  # the random part differs each time


async def test_add_is_idempotent_on_id(messages: MessageStore) -> None:
    assert await messages.add(message(1)) is True
    assert await messages.add(message(1)) is False
    assert len(await messages.history("alice", "bob")) == 1


async def test_add_many_returns_only_new_messages_in_order(messages: MessageStore) -> None:
    await messages.add(message(2))
    added = await messages.add_many([message(1), message(2), message(3), message(3)])
    assert [m.id for m in added] == ["m1", "m3"]


async def test_unshipped_in_order_until_marked(messages: MessageStore) -> None:
    await messages.add_many([message(n) for n in range(5)])
    await messages.add(message(9, sender="bob", recipient="alice"))
    assert [m.id for m in await messages.unshipped("alice", "bob")] == [
        "m0",
        "m1",
        "m2",
        "m3",
        "m4",
    ]
    await messages.mark_shipped("bob", ["m1", "m3", "unknown", "m9"])  # m9: not to bob
    assert [m.id for m in await messages.unshipped("alice", "bob")] == ["m0", "m2", "m4"]
    assert [m.id for m in await messages.unshipped("bob", "alice")] == ["m9"]
    history = await messages.history("alice", "bob")
    assert {m.id: m.shipped for m in history}["m1"] is True


async def test_one_ack_of_thousands_marks_them_all_and_nothing_else(
    messages: MessageStore,
) -> None:
    await messages.add_many([message(n) for n in range(5000)])
    await messages.add_many([message(n, recipient="carol") for n in range(5000, 5010)])
    odd = [f"m{n}" for n in range(1, 5000, 2)]
    await messages.mark_shipped("bob", [*odd, "m5001", "'); DROP TABLE messages; --"])
    unshipped = [m.id for m in await messages.unshipped("alice", "bob")]
    assert unshipped == [f"m{n}" for n in range(0, 5000, 2)]
    assert len(await messages.unshipped("alice", "carol")) == 10  # m5001: not to bob
    await messages.add_many(
        [message(n, sender="bob", recipient="alice") for n in range(9000, 9003)]
    )
    assert await messages.next_unread("alice") is None  # stored as read (not unread=True)
    got = await messages.add_many(
        [message(n, sender="bob", recipient="alice") for n in range(9100, 9103)], unread=True
    )
    await messages.mark_read("bob", [m.id for m in got[:2]] + ["m1"])  # m1: alice's
    left = await messages.next_unread("alice")
    assert left is not None
    assert left.id == "m9102"


async def test_history_both_directions_oldest_first_with_limit(messages: MessageStore) -> None:
    await messages.add(message(1))
    await messages.add(message(2, sender="bob", recipient="alice"))
    await messages.add(message(3, recipient="carol"))
    await messages.add(message(4))
    assert [m.id for m in await messages.history("alice", "bob")] == ["m1", "m2", "m4"]
    assert [m.id for m in await messages.history("bob", "alice")] == ["m1", "m2", "m4"]
    assert [m.id for m in await messages.history("alice", "bob", limit=2)] == ["m2", "m4"]
    assert await messages.history("alice", "nobody") == []


async def test_correspondents_most_recent_first(messages: MessageStore) -> None:
    await messages.add(message(1))  # alice -> bob
    await messages.add(message(2, recipient="carol"))
    await messages.add(message(3, sender="dave", recipient="alice"))
    await messages.add(message(4, sender="bob", recipient="alice"))
    await messages.add(message(5, sender="carol", recipient="erin"))  # not alice's
    assert await messages.correspondents("alice") == ["bob", "dave", "carol"]
    assert await messages.correspondents("alice", limit=2) == ["bob", "dave"]
    assert await messages.correspondents("nobody") == []


async def test_messages_keep_every_field(messages: MessageStore) -> None:
    original = Message(
        id="x", sender="a", recipient="b", body="ünï\ncode ✓", sent_at=1.5, shipped=True
    )
    await messages.add(original)
    assert await messages.history("a", "b") == [original]


async def test_concurrent_adds_are_all_stored(messages: MessageStore) -> None:
    import asyncio

    results = await asyncio.gather(*(messages.add(message(n)) for n in range(200)))
    assert all(results)
    assert len(await messages.unshipped("alice", "bob")) == 200


async def test_user_online_offline_and_lookup(users: UserStore) -> None:
    assert await users.get("alice") is None
    await users.set_online("alice", [("127.0.0.1", 4000)], now=10.0)
    await users.set_online("bob", [], now=11.0)
    assert await users.online() == ["alice", "bob"]
    await users.set_offline("alice", now=12.0)
    alice = await users.get("alice")
    assert alice is not None
    assert (alice.online, alice.first_seen, alice.last_seen) == (False, 10.0, 12.0)
    assert alice.addresses == [("127.0.0.1", 4000)]
    assert await users.online() == ["bob"]
    await users.set_online("alice", [("::1", 5)], now=13.0)
    again = await users.get("alice")
    assert again is not None
    assert again.first_seen == 10.0
    assert again.addresses == [("::1", 5)]


async def test_reset_presence_and_limit(users: UserStore) -> None:
    for name in ("c", "a", "b"):
        await users.set_online(name, [], now=1.0)
    assert await users.online(limit=2) == ["a", "b"]
    await users.reset_presence()
    assert await users.online() == []
    assert await users.get("a") is not None


# SQLite only.


async def test_reopened_message_store_has_everything_with_shipped_state(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    await store.add_many([message(n) for n in range(3)])
    await store.mark_shipped("bob", ["m0"])
    await store.close()
    reopened = p2pchat.SqliteMessageStore(path)
    await reopened.start()
    try:
        assert [(m.id, m.shipped) for m in await reopened.history("alice", "bob")] == [
            ("m0", True),
            ("m1", False),
            ("m2", False),
        ]
    finally:
        await reopened.close()


async def test_sqlite_files_are_private_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    await store.add(message(1))
    for name in ("m.sqlite3", "m.sqlite3-wal", "m.sqlite3-shm"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 8  # messages: version 8


@pytest.mark.parametrize("kind", [p2pchat.SqliteMessageStore, p2pchat.SqliteUserStore])
async def test_a_store_from_a_newer_version_is_refused(
    tmp_path: Path, kind: Callable[[Path], MessageStore | UserStore]
) -> None:
    path = tmp_path / "future.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer than this p2pchat knows"):
        await kind(path).start()


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        await p2pchat.SqliteMessageStore(path).start()


async def test_unopened_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="call start"):
        await p2pchat.SqliteMessageStore(tmp_path / "x.sqlite3").add(message(1))


async def test_a_failed_write_rolls_back_and_the_store_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        await store.add(message(1))
        with sqlite3.connect(path) as other:  # a trigger makes the next insert fail
            other.execute(
                "CREATE TRIGGER no_bodies BEFORE INSERT ON messages WHEN NEW.body = 'boom'"
                " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        bad = Message(id="bad", sender="alice", recipient="bob", body="boom", sent_at=1.0)
        with pytest.raises(StoreError, match="disk says no"):
            await store.add_many([message(2), bad])
        assert [m.id for m in await store.history("alice", "bob")] == ["m1"]  # all or nothing
        assert await store.add(message(3)) is True
    finally:
        await store.close()


async def test_a_failing_write_fails_alone_in_its_group_commit(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        await store.add(message(1))
        with sqlite3.connect(path) as other:
            other.execute(
                "CREATE TRIGGER no_bodies BEFORE INSERT ON messages WHEN NEW.body = 'boom'"
                " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
            )
        bad = Message(id="bad", sender="alice", recipient="bob", body="boom", sent_at=1.0)
        # Queued in the same step: they share one transaction.
        results = await asyncio.gather(
            store.add(message(2)),
            store.add(bad),
            store.add(message(3)),
            store.mark_shipped("bob", ["m1"]),
            return_exceptions=True,
        )
        assert results[0] is True
        assert results[2] is True
        assert results[3] is None
        assert isinstance(results[1], StoreError)
        assert [(m.id, m.shipped) for m in await store.history("alice", "bob")] == [
            ("m1", True),
            ("m2", False),
            ("m3", False),
        ]
    finally:
        await store.close()


async def test_reads_never_see_a_write_transaction_half_done(tmp_path: Path) -> None:
    store = p2pchat.SqliteMessageStore(tmp_path / "m.sqlite3")
    await store.start()
    loop = asyncio.get_running_loop()
    inserted, release = asyncio.Event(), threading.Event()

    def slow_job(db: sqlite3.Connection) -> None:  # on the writer's thread
        db.execute(
            "INSERT INTO messages (id, sender, recipient, body, sent_at) VALUES (?, ?, ?, ?, ?)",
            ("half", "alice", "bob", "not committed yet", 1.0),
        )
        loop.call_soon_threadsafe(inserted.set)
        release.wait(10)
        raise sqlite3.OperationalError("it fails after all")

    try:
        writing = asyncio.create_task(store._database.write(slow_job))
        await inserted.wait()
        assert await store.history("alice", "bob") == []  # not committed: not seen
        assert await store.unshipped("alice", "bob") == []
        release.set()
        with pytest.raises(StoreError, match="it fails after all"):
            await writing
        assert await store.history("alice", "bob") == []
    finally:
        release.set()
        await store.close()


async def test_bind_key_is_case_insensitive_and_can_refuse_to_create(users: UserStore) -> None:
    assert await users.bind_key("Alice", "k1", now=1.0, create=False) is None
    first = await users.bind_key("Alice", "k1", now=1.0)
    assert first == p2pchat.Binding(name="Alice", key="k1", created=True)
    again = await users.bind_key("alice", "k2", now=2.0)
    assert again == p2pchat.Binding(name="Alice", key="k1", created=False)


async def test_bind_key_tells_the_mailbox_key_and_signature_published(users: UserStore) -> None:
    """What a returning user's login compares its mailbox key and signature with."""
    first = await users.bind_key("bob", "k1", now=1.0, mailbox=("m1", "s1"))
    assert first is not None
    assert (first.mailbox_key, first.mailbox_sig) == ("m1", "s1")
    again = await users.bind_key("bob", "k1", now=2.0, create=False, mailbox=("m2", "s2"))
    assert again is not None
    assert (again.mailbox_key, again.mailbox_sig) == ("m1", "s1")  # not written again
    await users.set_mailbox_key("bob", "m2", "s2")
    later = await users.bind_key("bob", "k1", now=3.0, create=False)
    assert later is not None
    assert (later.mailbox_key, later.mailbox_sig) == ("m2", "s2")
    bare = await users.bind_key("carol", "k3", now=1.0)
    assert bare is not None
    assert (bare.mailbox_key, bare.mailbox_sig) == (None, None)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def mailbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Mailbox]:
    store: Mailbox
    if request.param == "redis":
        store = RedisMailbox(
            request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix")
        )
    elif request.param == "memory":
        store = p2pchat.MemoryMailbox()
    else:
        store = p2pchat.SqliteMailbox(tmp_path / "mailbox.sqlite3")
    await store.start()
    yield store
    await store.close()


def item(
    n: int, *, to: str = "bob", size: int = 10, expires: float = 2000.0, sender: str = "alice"
) -> MailboxItem:
    return MailboxItem(
        recipient=to,
        item=f"i{n}",
        kind="msg",
        sender=sender,
        sealed="x" * size,
        at=1000.0 + n,
        expires=expires,
    )


async def test_mailbox_keeps_items_once_in_order_until_removed(mailbox: Mailbox) -> None:
    assert await mailbox.deposit(item(1), max_items=None, max_bytes=None) is True
    assert await mailbox.deposit(item(2), max_items=None, max_bytes=None) is True
    assert await mailbox.deposit(item(1), max_items=None, max_bytes=None) is False  # again
    await mailbox.deposit(item(3, to="carol"), max_items=None, max_bytes=None)
    page, more = await mailbox.pending("bob", now=1500.0, limit=10, max_bytes=1000)
    assert ([i.item for i in page], more) == (["i1", "i2"], False)
    assert await mailbox.usage("bob") == (2, 20)
    assert await mailbox.remove("bob", ["i1", "i3"]) == 1  # i3 is carol's: not bob's to drop
    page, _ = await mailbox.pending("bob", now=1500.0, limit=10, max_bytes=1000)
    assert [i.item for i in page] == ["i2"]
    assert await mailbox.usage("carol") == (1, 10)


async def test_mailbox_pages_by_count_and_bytes(mailbox: Mailbox) -> None:
    for n in range(5):
        await mailbox.deposit(item(n, size=100), max_items=None, max_bytes=None)
    page, more = await mailbox.pending("bob", now=0.0, limit=2, max_bytes=10_000)
    assert ([i.item for i in page], more) == (["i0", "i1"], True)
    page, more = await mailbox.pending("bob", now=0.0, limit=10, max_bytes=250)
    assert ([i.item for i in page], more) == (["i0", "i1"], True)
    page, more = await mailbox.pending("bob", now=0.0, limit=10, max_bytes=10)  # at least one
    assert ([i.item for i in page], more) == (["i0"], True)


async def test_mailbox_bounds_items_and_bytes_per_recipient(mailbox: Mailbox) -> None:
    await mailbox.deposit(item(1), max_items=2, max_bytes=25)
    await mailbox.deposit(item(2), max_items=2, max_bytes=25)
    with pytest.raises(p2pchat.MailboxFull, match="holds 2 items"):
        await mailbox.deposit(item(3), max_items=2, max_bytes=None)
    with pytest.raises(p2pchat.MailboxFull, match="holds 20 bytes"):
        await mailbox.deposit(item(3), max_items=None, max_bytes=25)
    await mailbox.deposit(item(3, to="carol"), max_items=2, max_bytes=25)  # per recipient


async def test_mailbox_bounds_each_senders_share(mailbox: Mailbox) -> None:
    share = {"max_items": 10, "max_bytes": 1000, "max_sender_items": 2, "max_sender_bytes": 25}
    await mailbox.deposit(item(1), **share)
    await mailbox.deposit(item(2), **share)
    with pytest.raises(p2pchat.MailboxFull, match="alice's share of bob's mailbox holds 2 items"):
        await mailbox.deposit(item(3), **share)
    with pytest.raises(p2pchat.MailboxFull, match="alice's share of bob's mailbox holds 20 bytes"):
        await mailbox.deposit(item(3), **{**share, "max_sender_items": None})
    assert await mailbox.deposit(item(3, sender="carol"), **share)  # another sender's share
    assert await mailbox.deposit(item(4, to="dave"), **share)  # another recipient's
    assert await mailbox.deposit(item(2), **share) is False  # kept already: no refusal
    # What is settled or expires frees the share.
    assert await mailbox.remove("bob", ["i1"]) == 1
    assert await mailbox.deposit(item(5), **share)
    await mailbox.deposit(item(6, expires=100.0, sender="erin"), **share)
    await mailbox.deposit(item(7, expires=100.0, sender="erin"), **share)
    with pytest.raises(p2pchat.MailboxFull, match="erin's share"):
        await mailbox.deposit(item(8, sender="erin"), **share)
    assert await mailbox.expire(200.0) == 2
    assert await mailbox.deposit(item(8, sender="erin"), **share)
    assert await mailbox.usage("bob") == (4, 40)


async def test_mailbox_expires_items(mailbox: Mailbox) -> None:
    await mailbox.deposit(item(1, expires=100.0), max_items=None, max_bytes=None)
    await mailbox.deposit(item(2, expires=300.0), max_items=None, max_bytes=None)
    page, _ = await mailbox.pending("bob", now=200.0, limit=10, max_bytes=1000)
    assert [i.item for i in page] == ["i2"]  # past its time: not handed out any more
    assert await mailbox.expire(200.0) == 1
    assert await mailbox.usage("bob") == (1, 10)


async def test_mailbox_totals_count_everyone(mailbox: Mailbox) -> None:
    assert await mailbox.totals() == (0, 0)
    await mailbox.deposit(item(1, size=10), max_items=None, max_bytes=None)
    await mailbox.deposit(item(2, to="carol", size=30), max_items=None, max_bytes=None)
    assert await mailbox.totals() == (2, 40)
    await mailbox.remove("bob", ["i1"])
    assert await mailbox.totals() == (1, 30)


async def test_unread_and_deposited_marks(messages: MessageStore) -> None:
    await messages.add_many([message(1, sender="bob", recipient="alice")], unread=True)
    await messages.add(message(2, sender="bob", recipient="alice"))  # in a talk: not unread
    await messages.add_many([message(3, sender="bob", recipient="alice")], unread=True)
    first = await messages.next_unread("alice")
    assert first is not None
    assert first.id == "m1"
    await messages.mark_read("bob", ["m1"])
    second = await messages.next_unread("alice")
    assert second is not None
    assert second.id == "m3"
    assert await messages.next_unread("bob") is None
    await messages.add_many([message(4), message(5)])
    await messages.mark_deposited(["m4"])
    assert [m.id for m in await messages.undeposited("alice")] == ["m5"]
    await messages.mark_shipped("bob", ["m5"])
    assert await messages.undeposited("alice") == []


async def test_a_shipped_mark_alone_skips_the_fsync_and_a_message_never_does(
    tmp_path: Path,
) -> None:
    store = p2pchat.SqliteMessageStore(tmp_path / "messages.sqlite3")
    await store.start()
    database = store._database
    writer = database._writer_thread

    def synchronous() -> int:
        assert writer.connection is not None
        return int(writer.connection.execute("PRAGMA synchronous").fetchone()[0])

    try:
        await store.add(message(1))
        assert await writer.run(synchronous) == 2  # FULL: an ack promises it is on disk
        await store.mark_shipped("bob", ["m1"])
        assert await writer.run(synchronous) == 1  # NORMAL: if lost, resent and ignored
        assert [m.shipped for m in await store.history("alice", "bob")] == [True]
        # Both at once share one commit: it is durable.
        await asyncio.gather(store.mark_shipped("bob", ["m1"]), store.add(message(2)))
        assert await writer.run(synchronous) == 2
        await store.mark_read("alice", ["m2"])  # if lost, it would show again: durable
        assert await writer.run(synchronous) == 2
    finally:
        await store.close()


# Received messages are known by (sender, id) (issue 18, finding 6).


async def test_the_same_id_from_another_sender_is_another_message(messages: MessageStore) -> None:
    squatted = Message(id="x1", sender="zed", recipient="alice", body="first", sent_at=1.0)
    real = Message(id="x1", sender="carol", recipient="alice", body="real", sent_at=2.0)
    assert await messages.add_many([squatted], unread=True) == [squatted]
    assert await messages.add_many([real, real], unread=True) == [real]  # new; once
    assert await messages.add(real) is False
    assert [m.body for m in await messages.history("alice", "carol")] == ["real"]
    assert [m.body for m in await messages.history("alice", "zed")] == ["first"]
    await messages.mark_read("zed", ["x1"])  # zed's only: carol's is still unread
    unread = await messages.next_unread("alice")
    assert unread is not None
    assert (unread.sender, unread.body) == ("carol", "real")
    # An ack counts for the message to whoever sends it, whoever else used the id.
    mine = Message(id="x1", sender="alice", recipient="bob", body="mine", sent_at=3.0)
    assert await messages.add(mine) is True
    await messages.mark_shipped("bob", ["x1"])
    assert [m.shipped for m in await messages.history("alice", "bob")] == [True]
    assert [m.shipped for m in await messages.history("alice", "carol")] == [False]


SCHEMA = Path(p2pchat.stores.__file__).with_name("schema")


async def test_a_store_made_by_the_version_3_schema_is_migrated_keeping_everything(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # as p2pchat made it before keys by (sender, id)
        for version in (1, 2, 3):
            db.executescript((SCHEMA / f"messages-{version}.sql").read_text())
        db.execute("PRAGMA user_version = 3")
        db.executemany(
            "INSERT INTO messages (id, sender, recipient, body, sent_at, shipped, unread,"
            " deposited) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("a1", "alice", "bob", "sent, shipped", 1.0, 1, 0, 1),
                ("b1", "bob", "alice", "received, unread", 2.0, 1, 1, 0),
                ("a2", "alice", "bob", "sent, waiting", 3.0, 0, 0, 0),
            ],
        )
        db.execute("INSERT INTO contacts VALUES ('alice', 'bob', 'key-of-bob', 1.0, 1.0)")
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        history = await store.history("alice", "bob")
        assert [(m.id, m.body, m.shipped) for m in history] == [
            ("a1", "sent, shipped", True),
            ("b1", "received, unread", True),
            ("a2", "sent, waiting", False),
        ]
        unread = await store.next_unread("alice")
        assert unread is not None
        assert unread.id == "b1"
        assert [m.id for m in await store.undeposited("alice")] == ["a2"]
        assert await store.known_key("alice", "bob") == "key-of-bob"
        # Now another sender's a1 is another message, and it comes after the old ones.
        theirs = Message(id="a1", sender="carol", recipient="alice", body="hi", sent_at=4.0)
        assert await store.add(theirs) is True
        assert await store.correspondents("alice") == ["carol", "bob"]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 8


async def test_mailbox_pages_go_on_past_what_was_handed_out(mailbox: Mailbox) -> None:
    # A session's next page skips what its earlier pages handed out and the peer kept
    # (a receipt refused): never the same page again.
    for n in range(1, 6):
        await mailbox.deposit(item(n), max_items=None, max_bytes=None)
    page, more = await mailbox.pending("bob", now=0.0, limit=2, max_bytes=1000)
    assert ([i.item for i in page], more) == (["i1", "i2"], True)
    page, more = await mailbox.pending("bob", now=0.0, limit=2, max_bytes=1000, skip={"i1", "i2"})
    assert ([i.item for i in page], more) == (["i3", "i4"], True)
    skip = {"i1", "i2", "i3", "i4"}
    page, more = await mailbox.pending("bob", now=0.0, limit=2, max_bytes=1000, skip=skip)
    assert ([i.item for i in page], more) == (["i5"], False)
