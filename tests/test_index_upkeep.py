"""The search index's upkeep in the SQLite store: segments merged when the store is idle,
or between writes once writes have not let it be for long (schema 8), and what neither
may cost: a write, a message in the index, or the index's integrity."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

import p2pchat
from p2pchat import Message
from p2pchat.stores import sqlite_db

from .conftest import PeerFactory, connect, eventually


@pytest.fixture(autouse=True)
def writes_at_a_chats_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each write here stands for one that comes more than ``BURST`` after the last (a
    chat's pace, or a flood of one message every 0.1 s, which never lets the store be
    idle): indexed in its own transaction, a segment each. (Writes that come closer
    share index writes: test_index_tail.py.)"""
    monkeypatch.setattr(sqlite_db, "BURST", 0.0)


def said(n: int, body: str, sender: str = "alice", recipient: str = "bob") -> Message:
    return Message(id=f"m{n}", sender=sender, recipient=recipient, body=body, sent_at=1000.0 + n)


def indexed(path: Path) -> tuple[int, int]:
    """(messages, bodies in the full-text index, read from the index itself)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.messages_words"
            " USING fts5vocab(main, messages_fts, instance)"
        )
        words = db.execute("SELECT count(DISTINCT doc) FROM temp.messages_words").fetchone()[0]
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0]), int(words)


def index_whole(path: Path) -> None:
    """FTS5's own check of the index against the messages (raises if it is not): with
    what waits to be indexed (the tail) indexed first, in a transaction rolled back."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.execute(
            "INSERT INTO messages_fts (rowid, body) SELECT seq, body FROM messages"
            " WHERE seq > (SELECT up_to FROM messages_indexed)"
        )
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        db.execute("ROLLBACK")
        db.close()


def segments(path: Path) -> int:
    """How many segments the full-text index is in."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(DISTINCT segid) FROM messages_fts_idx").fetchone()[0])


async def test_writes_only_add_to_the_index_and_idle_time_merges_it(tmp_path: Path) -> None:
    # Each write transaction adds a segment to the index and merges nothing (version 7:
    # merging was half of indexing's cost); once the store is idle it merges them, 16 at a
    # time, in steps that writes go between. Found before, during and after; whole after.
    path = tmp_path / "m.sqlite3"
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        for n in range(60):  # 60 transactions, one message each, faster than idle comes
            await store.add(said(n, f"note{n} common" + (" rare" if n % 20 == 7 else "")))
        assert segments(path) >= 50  # (60 unless a pause let a merge in)
        assert [m.id for m in await store.search("bob", "rare")] == ["m47", "m27", "m7"]
        await eventually(lambda: segments(path) < 16)  # merged when idle
        await store.add(said(60, "note60 rare"))  # after a merge: one more segment
        assert [m.id for m in await store.search("bob", "rare")] == ["m60", "m47", "m27", "m7"]
        assert [m.id for m in await store.search("bob", "note23")] == ["m23"]
        assert len(await store.search("bob", "common", limit=100)) == 60
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        settings = dict(db.execute("SELECT k, v FROM messages_fts_config").fetchall())
        merging = (settings["automerge"], settings["usermerge"], settings["crisismerge"])
        assert merging == (0, 16, 512)
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")


class FallsBehindSoon(p2pchat.SqliteMessageStore):
    BEHIND = 20


async def test_writes_that_never_pause_let_merging_in_between_once_far_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past BEHIND segments, merging goes between writes, a step after each (version 8;
    # FTS5's own merge of a whole level in one write is left at 512 segments): with no
    # idle moment at all (none comes within a minute here), the index stays in a bounded
    # number of segments, and stays whole.
    monkeypatch.setattr(sqlite_db, "IDLE_AFTER", 60.0)
    path = tmp_path / "m.sqlite3"
    store = FallsBehindSoon(path)
    await store.start()
    try:
        most = 0
        for n in range(120):
            await store.add(said(n, f"note{n} common" + (" rare" if n % 20 == 7 else "")))
            most = max(most, segments(path))
        assert FallsBehindSoon.BEHIND <= most <= FallsBehindSoon.BEHIND + 8
        rare = [m.id for m in await store.search("bob", "rare")]
        assert rare == ["m107", "m87", "m67", "m47", "m27", "m7"]
        assert len(await store.search("bob", "common", limit=200)) == 120
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")


async def test_segments_left_by_earlier_runs_count_towards_falling_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store reopened into writes that never pause (a restart into a flood, a crash
    # loop) counts what its earlier runs left unmerged: runs shorter than BEHIND do not
    # add up past it (found by review: 4 runs of 19 writes left 76 segments).
    monkeypatch.setattr(sqlite_db, "IDLE_AFTER", 60.0)
    path = tmp_path / "m.sqlite3"
    for run in range(4):
        store = FallsBehindSoon(path)
        await store.start()
        try:
            assert store._segments == segments(path)  # counted at start
            for n in range(19 * run, 19 * (run + 1)):
                await store.add(said(n, f"note{n} common"))
        finally:
            await store.close()
        assert segments(path) <= FallsBehindSoon.BEHIND + 8
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")
    assert indexed(path) == (76, 76)


class UpkeepFails(p2pchat.SqliteMessageStore):
    BEHIND = 2

    def _tidy(self, db: sqlite3.Connection) -> bool:
        raise sqlite3.OperationalError("database or disk is full")


async def test_writes_go_on_when_merging_between_them_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A step of merging is a transaction of its own: when it fails (a full disk, say),
    # it is logged, and the writes around it are not touched.
    path = tmp_path / "m.sqlite3"
    store = UpkeepFails(path)
    await store.start()
    try:
        for n in range(10):
            assert await store.add(said(n, f"note{n} common"))
        assert len(await store.search("bob", "common")) == 10
    finally:
        await store.close()
    assert "disk is full" in caplog.text
    assert indexed(path) == (10, 10)


async def test_a_write_that_comes_while_the_index_is_merged_waits_one_step(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.sqlite3"
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        await store.add_many([said(n, f"word{n} every") for n in range(2000)])
        for n in range(2000, 2040):
            await store.add(said(n, f"word{n} every"))
        before = segments(path)
        await eventually(lambda: segments(path) < before)  # merging has begun
        written = asyncio.gather(*(store.add(said(n, f"late{n} every")) for n in range(2040, 2060)))
        assert all(await asyncio.wait_for(written, 5))
        assert len(await store.search("bob", "every", limit=3000)) == 2060
        assert [m.id for m in await store.search("bob", "late2059")] == ["m2059"]
    finally:
        await store.close()  # with a step perhaps running: it ends first
    reopened = p2pchat.SqliteMessageStore(path)
    await reopened.start()
    try:
        assert len(await reopened.search("bob", "every", limit=3000)) == 2060
    finally:
        await reopened.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)")


WRITER = """
import asyncio, random, sys
import p2pchat
from p2pchat import Message
from p2pchat.stores import sqlite_db
sqlite_db.IDLE_AFTER = 60.0
sqlite_db.BURST = 0.0  # (writes_at_a_chats_pace)

class Behind(p2pchat.SqliteMessageStore):
    BEHIND = 4
    def _tidy(self, db):
        sys.stdout.write("step\\n")  # one write: this thread and the loop's both print
        sys.stdout.flush()
        return super()._tidy(db)

async def main():
    store = Behind(sys.argv[1])
    await store.start()
    seed = int(sys.argv[2])
    rnd = random.Random(seed)
    n = 0
    while True:
        body = " ".join(f"w{rnd.getrandbits(40):x}" for _ in range(300)) + " common"
        batch = [Message(id=f"r{seed}m{n + k}", sender="alice", recipient="bob", body=body,
                         sent_at=1000.0 + n + k) for k in range(4)]
        await store.add_many(batch)
        sys.stdout.write(f"stored {n + 3}\\n")
        sys.stdout.flush()
        n += 4

asyncio.run(main())
"""


async def test_a_process_killed_while_merging_between_writes_loses_nothing(
    tmp_path: Path,
) -> None:
    # A real process writing through the store, merging going between its writes, is
    # SIGKILLed after several steps (twice, on one file): reopened, every message it was
    # told was stored is found, and the index is whole.
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    path = tmp_path / "m.sqlite3"
    for seed in (1, 2):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(path), str(seed), stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        stored = steps = 0
        try:
            async with asyncio.timeout(30):
                while steps < 6 + 3 * seed:
                    line = (await process.stdout.readline()).decode()
                    assert line, "the writer ended"
                    if line.startswith("stored"):
                        stored = int(line.split()[1]) + 1
                    elif line.startswith("step"):
                        steps += 1
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        assert stored > 0
        store = p2pchat.SqliteMessageStore(path)
        await store.start()
        try:
            found = {m.id for m in await store.search("bob", "common", limit=10_000)}
        finally:
            await store.close()
        assert {f"r{seed}m{k}" for k in range(stored)} <= found
        index_whole(path)


class Steps(FallsBehindSoon):
    """Counts its steps of merging, idle or between writes."""

    steps = 0

    def _tidy(self, db: sqlite3.Connection) -> bool:
        self.steps += 1
        return super()._tidy(db)


async def test_a_peer_that_sends_message_after_message_keeps_our_index_bounded(
    make_peer: PeerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bob sends 600 messages one at a time, each received before the next: Alice stores
    # each in a transaction of its own, with no idle moment. Merging goes between her
    # writes, her index stays in a bounded number of segments, each message is stored once.
    monkeypatch.setattr(sqlite_db, "IDLE_AFTER", 60.0)
    path = tmp_path / "alice.sqlite3"
    store = Steps(path)
    alice = await make_peer("alice", store=store)
    bob = await make_peer("bob")
    chat_b, chat_a = await connect(bob, alice)
    most = 0
    for n in range(600):
        await chat_b.send(f"flood{n} common")
        assert (await asyncio.wait_for(chat_a.receive(), 5)).body == f"flood{n} common"
        if n % 50 == 0:
            most = max(most, segments(path))

    async def all_there() -> bool:
        return len(await store.search("alice", "common", limit=1000)) == 600

    await eventually(all_there, timeout=30)
    assert max(most, segments(path)) <= Steps.BEHIND + 8
    assert store.steps > 0
    assert len(await store.history("alice", "bob")) == 600
    index_whole(path)
