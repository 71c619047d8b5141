"""p2pchat workers: two peers in two processes, and rendezvous rounds.

``python -m benchmarks.chat receiver PORT STORE DIR``: bob, who accepts every invitation
and reads everything. ``python -m benchmarks.chat burst|awaited PORT STORE DIR COUNT
[relay]``: alice, who invites bob and measures messages stored on both sides, over TLS,
each acknowledged. STORE: memory, sqlite or sqlite-unindexed.
``python -m benchmarks.chat rendezvous PORT SECONDS CONCURRENCY``: full rounds (two
peers log in, invite, accept, a message each way, log out).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sqlite3
import sys
import time
from pathlib import Path

import p2pchat

from .common import percentile, say

UNREACHABLE = [("127.0.0.1", 9)]  # alice cannot be dialled: bob goes through the relay


class UnindexedStore(p2pchat.SqliteMessageStore):
    """The SQLite store with search's own parts taken out of today's schema (the full-text
    index, its triggers, messages_latest, and the (sender, recipient, sent_at, id) index of
    history pages, put back as the (sender, recipient, seq) one it replaced) and without
    the step that ends each write transaction by indexing its rows: the same code writing
    the same rows, so that beside SqliteMessageStore it shows what search costs the hot
    path. Measured so rather than by a switch in the store: a store without its index
    would be a mode to support, test and migrate from, for a benchmark's sake."""

    TIDY = False  # no index to merge when idle

    async def start(self) -> None:
        await super().start()
        await self._database.write(_unindex)

    def _finish(self, db: sqlite3.Connection, burst: bool) -> None:
        pass  # no index to write at the end of a transaction

    def _catch_up(self, db: sqlite3.Connection) -> int:
        return 0  # nor any to catch up with


def _unindex(db: sqlite3.Connection) -> None:
    for trigger in ("messages_fts_delete", "messages_fts_update", "messages_latest_update"):
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("DROP TABLE messages_fts")
    db.execute("DROP TABLE messages_latest")
    db.execute("DROP INDEX messages_pair_time")
    db.execute("CREATE INDEX messages_pair ON messages (sender, recipient, seq)")


def store(kind: str, directory: Path, name: str) -> p2pchat.MessageStore:
    if kind == "sqlite":
        return p2pchat.SqliteMessageStore(directory / f"{name}-{os.getpid()}.sqlite3")
    if kind == "sqlite-unindexed":
        return UnindexedStore(directory / f"{name}-{os.getpid()}.sqlite3")
    return p2pchat.MemoryMessageStore()


def bodies(count: int) -> list[str]:
    """``count`` bodies of about 100 characters, words from a vocabulary of 5,000 (the
    search index has words to index, as in a chat, not one 100-letter token)."""
    rng = random.Random(count)
    words = [f"{rng.choice('bcdfglmnprst')}{rng.choice('aeiou')}{n:x}" for n in range(5_000)]
    made = []
    for _ in range(count):
        body = ""
        while len(body) < 95:
            body += rng.choice(words) + " "
        made.append(body[:100])
    return made


async def receiver(port: int, kind: str, directory: Path) -> None:
    bob = p2pchat.Peer(
        "bob",
        server=("127.0.0.1", port),
        store=store(kind, directory, "bob"),
        identity=p2pchat.Identity.generate(),
        max_queue=1 << 16,
    )
    async with bob:
        say(ready=True)
        while True:
            chat = await (await bob.next_invitation()).accept()
            asyncio.get_running_loop().create_task(_drain(chat))


async def _drain(chat: p2pchat.Conversation) -> None:
    async for _ in chat:
        pass


async def sender(mode: str, port: int, kind: str, directory: Path, count: int, relay: bool) -> None:
    alice = p2pchat.Peer(
        "alice",
        server=("127.0.0.1", port),
        store=store(kind, directory, "alice"),
        identity=p2pchat.Identity.generate(),
        advertise=UNREACHABLE if relay else None,
        traversal=not relay,  # no call back either: the relay it is
        relay_after=0.05,
        max_queue=1 << 16,
    )
    async with alice:
        chat = await alice.invite("bob", timeout=30)
        assert chat.route == ("relay" if relay else "direct"), chat.route
        for n in range(50):  # warm up: the TLS session, the stores, the caches
            await chat.send(f"warm {n}")
        await chat.wait_acknowledged()
        texts = bodies(count)
        body = texts[0]
        if mode == "burst":
            started, cpu = time.perf_counter(), time.process_time()
            await chat.send_many(texts)
            await chat.wait_acknowledged()
            elapsed = time.perf_counter() - started
            # CPU time: what the sender spent, whatever else the machine runs meanwhile.
            cpu_us = (time.process_time() - cpu) / count * 1e6
            say(result={"per_second": count / elapsed, "cpu_us_per_message": cpu_us})
        else:
            times = []
            started = time.perf_counter()
            for _ in range(count):
                sent = time.perf_counter()
                await chat.send(body)
                await chat.wait_acknowledged()
                times.append(time.perf_counter() - sent)
            elapsed = time.perf_counter() - started
            say(
                result={
                    "per_second": count / elapsed,
                    "p50_ms": percentile(times, 0.5) * 1000,
                    "p99_ms": percentile(times, 0.99) * 1000,
                }
            )
        await chat.close()


async def rendezvous(port: int, seconds: float, concurrency: int) -> None:
    """Rounds until the time is up, ``concurrency`` at once; names are unique per process."""
    where = ("127.0.0.1", port)
    names = itertools.count()
    identities = [p2pchat.Identity.generate() for _ in range(2 * concurrency)]
    tag = f"r{os.getpid()}"
    rounds = 0
    deadline = time.perf_counter() + seconds

    async def one_round(slot: int) -> None:
        n = next(names)
        a = p2pchat.Peer(f"{tag}a{n}", server=where, identity=identities[2 * slot])
        b = p2pchat.Peer(f"{tag}b{n}", server=where, identity=identities[2 * slot + 1])
        async with a, b:
            inviting = asyncio.create_task(a.invite(b.name, timeout=30))
            chat_b = await (await b.next_invitation()).accept()
            chat_a = await inviting
            await chat_a.send("hi")
            await chat_b.receive()
            await chat_b.send("hi")
            await chat_a.receive()

    async def loop(slot: int) -> None:
        nonlocal rounds
        while time.perf_counter() < deadline:
            await one_round(slot)
            rounds += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(slot) for slot in range(concurrency)))
    say(result={"rounds": rounds, "seconds": time.perf_counter() - started})


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "receiver":
        asyncio.run(receiver(port, sys.argv[3], Path(sys.argv[4])))
    elif mode == "rendezvous":
        asyncio.run(rendezvous(port, float(sys.argv[3]), int(sys.argv[4])))
    else:
        kind, directory, count = sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
        relay = len(sys.argv) > 6 and sys.argv[6] == "relay"
        asyncio.run(sender(mode, port, kind, directory, count, relay))


if __name__ == "__main__":
    main()
