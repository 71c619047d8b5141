"""The search index's tail in the SQLite store: in a burst (writes that wait behind one
another, or follow one another within ``BURST``), up to ``TAIL`` messages wait to be
indexed with a later transaction (one index write for thousands of messages rather than
one a transaction), and search finds them meanwhile, just as it finds those indexed;
what waits is indexed by the next write that is not one of a burst, or when the store is
idle, or after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

import p2pchat
from p2pchat import Message
from p2pchat.stores import sqlite_db

from .conftest import eventually
from .test_index_upkeep import index_whole, indexed


def waiting(path: Path) -> int:
    """Messages stored in ``path`` that the index does not hold yet."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        done = db.execute("SELECT up_to FROM messages_indexed").fetchone()[0]
        return int(db.execute("SELECT count(*) FROM messages WHERE seq > ?", (done,)).fetchone()[0])


def said(id: str, body: str, sent_at: float) -> Message:
    return Message(id=id, sender="bob", recipient="alice", body=body, sent_at=sent_at)


class AlwaysBusy(p2pchat.SqliteMessageStore):
    """Writes as if another always waited: what is stored waits for the index until TAIL
    messages do (the state a burst leaves between its transactions, kept still)."""

    TAIL = 70

    def _finish(self, db: sqlite3.Connection, burst: bool) -> None:
        super()._finish(db, True)


class NeverBusy(p2pchat.SqliteMessageStore):
    """Writes as if none were one of a burst: each transaction indexes what it stored."""

    def _finish(self, db: sqlite3.Connection, burst: bool) -> None:
        super()._finish(db, False)


WORDS = ["Café", "cafe", "CAFÉ", "naïve", "hello", "Hello world", "world", "hélló", "zebra"]
QUERIES = [
    "cafe",
    "CAFE",
    "café",
    "naive",
    "hel*",
    '"hello world"',
    "world",
    "hello world",
    "zeb*",
    "nothing",
    "w7",
    "x3*",
]


def conversation(rng: random.Random) -> list[Message]:
    """200 messages among alice, bob and carol, and a group's, of words from WORDS."""
    made = []
    for n in range(200):
        sender, recipient = rng.choice(
            [("alice", "bob"), ("bob", "alice"), ("carol", "alice"), ("alice", "g1")]
        )
        body = " ".join(rng.sample(WORDS, 3)) + f" w{n % 10} x{n}"
        group = "g1" if recipient == "g1" else None
        sent_at = 1000.0 + n + rng.choice([0.0, -30.0])  # some arrive late
        made.append(
            Message(
                id=f"m{n:03d}", sender=sender, recipient=recipient, body=body, sent_at=sent_at,
                group=group,
            )
        )  # fmt: skip
    return made


async def answers(store: p2pchat.MessageStore) -> dict[tuple[str, str, str | None, int], list[str]]:
    got = {}
    for query in QUERIES:
        for user, contact in (("alice", None), ("alice", "bob"), ("alice", "carol"), ("bob", None)):
            for limit in (3, 50):
                found = await store.search(user, query, contact=contact, limit=limit)
                got[query, user, contact, limit] = [m.id for m in found]
    return got


async def test_search_finds_what_the_index_does_not_hold_yet_as_the_index_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same messages in three stores: the memory store (a scan), a SQLite store with
    # everything indexed, and one where the last of them wait to be indexed. Every query
    # (accents, case, prefixes, phrases; by user, by contact; a group's messages; some
    # limits) has the same answer in all three.
    monkeypatch.setattr(sqlite_db, "IDLE_AFTER", 60.0)  # no idle moment indexes the tail
    messages = conversation(random.Random(7))
    memory = p2pchat.MemoryMessageStore()
    whole = NeverBusy(tmp_path / "whole.sqlite3")
    tail = AlwaysBusy(tmp_path / "tail.sqlite3")
    for store in (memory, whole, tail):
        await store.start()
    try:
        for message in messages:  # a transaction each
            for store in (memory, whole, tail):
                if message.group is None:
                    await store.add(message)
                else:
                    await store.add_group_messages([message], ["bob"])
        assert waiting(tmp_path / "whole.sqlite3") == 0
        assert waiting(tmp_path / "tail.sqlite3") == 200 % AlwaysBusy.TAIL  # 60 wait
        expected = await answers(memory)
        assert sum(map(len, expected.values())) > 500  # (the queries do find things)
        assert await answers(whole) == expected
        assert await answers(tail) == expected
        # The tail changes between searches: the scratch index follows it.
        await tail.add(said("late", "zebra", 5000.0))
        assert waiting(tmp_path / "tail.sqlite3") == 61
        assert [m.id for m in await tail.search("alice", "zebra", limit=1)] == ["late"]
        for n in range(9):  # the tail reaches TAIL: indexed, and a new tail begins
            await tail.add(said(f"n{n}", "yak", 6000.0 + n))
        assert waiting(tmp_path / "tail.sqlite3") == 0
        await tail.add(said("n9", "yak zebra", 6009.0))
        assert waiting(tmp_path / "tail.sqlite3") == 1
        assert len(await tail.search("alice", "yak")) == 10
        assert [m.id for m in await tail.search("alice", "zebra", limit=2)] == ["n9", "late"]
    finally:
        for store in (memory, whole, tail):
            await store.close()
    index_whole(tmp_path / "tail.sqlite3")


async def test_an_idle_store_indexes_what_waits_and_a_reopened_one_too(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    store = AlwaysBusy(path)
    await store.start()
    try:
        for n in range(30):
            await store.add(said(f"m{n}", f"w{n}", 1000.0 + n))
        assert waiting(path) == 30
        await eventually(lambda: waiting(path) == 0, timeout=10)  # idle: indexed
    finally:
        await store.close()
    # Left waiting by a run that ended in a crash (the file as it leaves it): the next run
    # finds it at once, and indexes it once idle.
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE messages_indexed SET up_to = 0")
        db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('delete-all')")
    assert waiting(path) == 30
    reopened = p2pchat.SqliteMessageStore(path)
    await reopened.start()
    try:
        assert [m.id for m in await reopened.search("alice", "w7")] == ["m7"]
        await eventually(lambda: waiting(path) == 0, timeout=10)
        assert [m.id for m in await reopened.search("alice", "w7")] == ["m7"]
    finally:
        await reopened.close()
    index_whole(path)
    assert indexed(path) == (30, 30)


async def writes_in_flight(store: p2pchat.SqliteMessageStore, batches: int, size: int) -> None:
    """``batches`` writes of ``size`` messages, four at a time (as a talk's sender
    stores them), each with a word of its own: b{batch}."""
    room = asyncio.Semaphore(4)

    async def one(batch: int) -> None:
        try:
            await store.add_many(
                [
                    Message(id=f"b{batch}m{k}", sender="alice", recipient="bob",
                            body=f"b{batch} common word{k % 50}", sent_at=batch + k / 100)
                    for k in range(size)
                ]
            )  # fmt: skip
        finally:
            room.release()

    async with asyncio.TaskGroup() as tasks:
        for batch in range(batches):
            await room.acquire()  # the next goes once one of the four is done
            tasks.create_task(one(batch))


class Counting(p2pchat.SqliteMessageStore):
    """Counts its write transactions, those of a burst, and its index writes."""

    transactions = bursts = index_writes = 0
    last_burst = False

    def _finish(self, db: sqlite3.Connection, burst: bool) -> None:
        self.transactions += 1
        self.bursts += burst
        self.last_burst = burst
        super()._finish(db, burst)

    def _indexed(self, added: int) -> None:
        self.index_writes += bool(added)
        super()._indexed(added)


async def test_writes_that_follow_one_another_share_index_writes(tmp_path: Path) -> None:
    # 300 writes of 40, four in flight: a transaction of a burst leaves its messages to
    # a later one's index write, up to TAIL of them: far fewer index writes than
    # transactions. The burst's last messages are indexed once the store is idle.
    path = tmp_path / "m.sqlite3"
    store = Counting(path)
    await store.start()
    try:
        await writes_in_flight(store, 300, 40)
        assert store.index_writes <= store.transactions // 3, store.index_writes
        assert store.transactions >= 75  # (at most four writes shared a transaction)
        assert len(await store.search("bob", "b299")) == 40
        assert len(await store.search("bob", "common", limit=20_000)) == 12_000
        await eventually(lambda: waiting(path) == 0, timeout=10)  # idle: indexed
    finally:
        await store.close()
    index_whole(path)
    assert indexed(path) == (12_000, 12_000)


async def test_writes_awaited_one_by_one_are_a_burst_until_a_pause(tmp_path: Path) -> None:
    # A receiver storing a stream batch by batch, a sender awaiting each message: no
    # write waits behind another, yet each follows the last within BURST. They share
    # index writes too, and search finds every one meanwhile. Once the store is idle
    # (IDLE_AFTER, longer than BURST) what waits is indexed, and the next write, after
    # that pause, is indexed by its own transaction, as a chat at human speed is.
    assert sqlite_db.IDLE_AFTER > sqlite_db.BURST
    path = tmp_path / "m.sqlite3"
    store = Counting(path)
    await store.start()
    try:
        for n in range(200):
            await store.add_many([said(f"b{n}m{k}", f"b{n} common", n + k / 10) for k in range(5)])
        assert store.transactions == 200
        # All but the first are a burst, unless the machine stalled the loop for BURST
        # (a busy machine): each stall costs one index write.
        assert store.bursts >= 150, store.bursts
        assert store.index_writes <= 1 + (200 - store.bursts), store.index_writes
        assert waiting(path) > 0
        assert len(await store.search("alice", "common", limit=2_000)) == 1_000
        assert [m.id for m in await store.search("alice", "b199", limit=1)] == ["b199m4"]
        await eventually(lambda: waiting(path) == 0, timeout=10)  # idle: indexed
        index_writes = store.index_writes
        await store.add(said("alone", "alone", 0.0))  # after the pause
        assert not store.last_burst
        assert waiting(path) == 0  # its own transaction indexed it
        assert store.index_writes == index_writes + 1
    finally:
        await store.close()
    index_whole(path)
    assert indexed(path) == (1_001, 1_001)


async def test_a_search_during_a_burst_finds_every_message_stored_before_it(
    tmp_path: Path,
) -> None:
    # While writes follow one another, each search for a batch already stored finds all
    # of it, whether the index holds it yet or not.
    store = p2pchat.SqliteMessageStore(tmp_path / "m.sqlite3")
    await store.start()
    try:
        writing = asyncio.create_task(writes_in_flight(store, 400, 40))
        searches = 0
        while not writing.done():
            stored = await store.history("bob", "alice", limit=1)
            if stored:
                batch = stored[0].body.split()[0]
                assert len(await store.search("bob", batch)) == 40, batch
                searches += 1
            await asyncio.sleep(0)
        await writing
        assert searches >= 10
    finally:
        await store.close()


WRITER = """
import asyncio, sys
from p2pchat import Message, SqliteMessageStore

async def main():
    store = SqliteMessageStore(sys.argv[1])
    await store.start()
    room = asyncio.Semaphore(4)
    async def one(batch):
        await store.add_many([Message(id=f"b{batch}m{k}", sender="alice", recipient="bob",
                                      body=f"b{batch} common", sent_at=batch + k / 100)
                              for k in range(25)])
        room.release()
        sys.stdout.write(f"stored {batch}\\n")
        sys.stdout.flush()
    tasks = set()
    for batch in range(1_000_000):
        await room.acquire()
        task = asyncio.create_task(one(batch))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

asyncio.run(main())
"""


async def test_a_process_killed_in_a_burst_leaves_nothing_unfound(tmp_path: Path) -> None:
    # A real process writing four batches at a time is SIGKILLed mid-burst: reopened,
    # each batch it was told was stored is found at once, and once idle the index holds
    # every message and is whole.
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    path = tmp_path / "m.sqlite3"
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(path), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    stored: set[int] = set()
    try:
        async with asyncio.timeout(30):
            while len(stored) < 300:
                line = (await process.stdout.readline()).decode()
                assert line, "the writer ended"
                stored.add(int(line.split()[1]))
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        for batch in sorted(stored)[-20:]:
            assert len(await store.search("bob", f"b{batch}")) == 25
        found = await store.search("bob", "common", limit=100_000)
        assert {m.id for m in found} >= {f"b{b}m{k}" for b in stored for k in range(25)}
        await eventually(lambda: waiting(path) == 0, timeout=10)
    finally:
        await store.close()
    index_whole(path)
    count, words = indexed(path)
    assert count == words >= 25 * len(stored)


class FinishFailsOnce(p2pchat.SqliteMessageStore):
    failed = False

    def _finish(self, db: sqlite3.Connection, burst: bool) -> None:
        if not self.failed:
            self.failed = True
            raise TypeError("a bug in what ends a transaction")
        super()._finish(db, burst)


async def test_an_error_in_what_ends_a_transaction_fails_its_writes_alone(tmp_path: Path) -> None:
    # Not only SQLite's errors: the transaction is rolled back, its writes fail with the
    # error, and the store goes on (it once stayed inside the transaction, and every
    # later write failed).
    path = tmp_path / "m.sqlite3"
    store = FinishFailsOnce(path)
    await store.start()
    try:
        with pytest.raises(TypeError, match="a bug"):
            await store.add(said("lost", "lost words", 1.0))
        assert await store.add(said("kept", "kept words", 2.0))
        assert [m.id for m in await store.history("alice", "bob")] == ["kept"]
        assert [m.id for m in await store.search("alice", "words")] == ["kept"]
    finally:
        await store.close()
    index_whole(path)


async def test_what_waits_is_bounded_by_the_size_of_its_bodies_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by review: 4,095 bodies of 16 KiB waiting made a search take 6.4 s to put them
    # in its scratch index, and the catching-up write 3 to 9 s. Now what waits is indexed
    # once its bodies reach TAIL_BYTES, whatever their count.
    monkeypatch.setattr(sqlite_db, "IDLE_AFTER", 60.0)
    path = tmp_path / "m.sqlite3"
    store = AlwaysBusy(path)
    store.TAIL = 4096
    await store.start()
    body = " ".join(f"w{n:05d}" for n in range(2_340))  # 16 KiB of words, each its own
    try:
        most = 0
        for n in range(60):
            await store.add(said(f"big{n}", f"{body} big{n:02d}", 1000.0 + n))
            most = max(most, waiting(path))
        size = len(body) + len(" big00")
        assert most * size < store.TAIL_BYTES <= (most + 1) * size  # 16 waited at most
        for n in range(60):  # small ones: thousands may wait
            await store.add(said(f"small{n}", f"small{n}", 2000.0 + n))
        assert waiting(path) >= 60
        assert [m.id for m in await store.search("alice", "big07")] == ["big7"]
        assert len(await store.search("alice", "w02339", limit=100)) == 60
    finally:
        await store.close()
    index_whole(path)


async def test_a_search_that_comes_while_the_store_closes_fails_as_a_store_error(
    tmp_path: Path,
) -> None:
    # Found by review: close() first indexes what waits; a search that came meanwhile
    # waited for that write, then ran on a reader already closed (an AssertionError).
    outcomes: set[str] = set()
    for n in range(12):
        store = AlwaysBusy(tmp_path / f"m{n}.sqlite3")
        store.TAIL = 10**9
        await store.start()
        await store.add_many([said(f"m{k}", f"word n{k}", float(k)) for k in range(300)])

        async def search(turns: int, store: p2pchat.SqliteMessageStore = store) -> str:
            for _ in range(turns):
                await asyncio.sleep(0)  # (to come at each point of close(), in turn)
            try:
                await store.search("alice", "word", limit=5)
            except p2pchat.StoreError:
                return "StoreError"
            return "found"

        _, outcome = await asyncio.gather(store.close(), search(n % 4))
        outcomes.add(outcome)
    assert outcomes <= {"found", "StoreError"}
    assert "StoreError" in outcomes
