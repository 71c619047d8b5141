"""Workers for the rows of the second speed step: concurrent senders, the fsync on the path.

``python -m benchmarks.speed senders PORT STORE DIR COUNT ROUNDS``: alice invites bob (a
``benchmarks.chat receiver``) and times, in turns within one run, ``send_many(COUNT)``
and ``COUNT`` concurrent ``send()`` calls (``asyncio.gather``), each until acknowledged.

``python -m benchmarks.speed commit DIR COUNT``: one SQLite commit of one message row
(WAL, ``synchronous = FULL``, the peer's schema), measured alone, COUNT times.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path

import p2pchat

from .chat import store
from .common import percentile, say


async def senders(port: int, kind: str, directory: Path, count: int, rounds: int) -> None:
    alice = p2pchat.Peer(
        "alice",
        server=("127.0.0.1", port),
        store=store(kind, directory, "alice"),
        identity=p2pchat.Identity.generate(),
        max_queue=1 << 16,
    )
    async with alice:
        chat = await alice.invite("bob", timeout=30)
        for n in range(50):  # warm up: the TLS session, the stores, the caches
            await chat.send(f"warm {n}")
        await chat.wait_acknowledged()
        body = "x" * 100
        times: dict[str, list[float]] = {
            "many": [],
            "many_stored": [],
            "gather": [],
            "gather_stored": [],
        }
        for _ in range(rounds):  # in turns, A B A B: the machine's drift hits both alike
            started = time.perf_counter()
            await chat.send_many(body for _ in range(count))
            times["many_stored"].append(time.perf_counter() - started)
            await chat.wait_acknowledged()
            times["many"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await asyncio.gather(*(chat.send(body) for _ in range(count)))
            times["gather_stored"].append(time.perf_counter() - started)
            await chat.wait_acknowledged()
            times["gather"].append(time.perf_counter() - started)
        say(result={key: statistics.median(values) for key, values in times.items()})
        await chat.close()


def commit(directory: Path, count: int) -> None:
    """One message row per transaction, each fsynced, as the peer's store writes it."""
    path = directory / f"commit-{uuid.uuid4().hex}.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE messages (seq INTEGER PRIMARY KEY, id TEXT, sender TEXT, recipient TEXT,"
        " body TEXT, sent_at REAL, shipped INTEGER, UNIQUE (id, sender))"
    )
    times = []
    for n in range(count):
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO messages (id, sender, recipient, body, sent_at, shipped)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            (str(uuid.uuid4()), "alice", "bob", "x" * 100, float(n)),
        )
        db.execute("COMMIT")
        times.append(time.perf_counter() - started)
    db.close()
    path.unlink()
    say(
        result={
            "p50_ms": percentile(times, 0.5) * 1000,
            "p99_ms": percentile(times, 0.99) * 1000,
        }
    )


def main() -> None:
    mode = sys.argv[1]
    if mode == "senders":
        port, kind, directory = int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
        count, rounds = int(sys.argv[5]), int(sys.argv[6])
        asyncio.run(senders(port, kind, directory, count, rounds))
    elif mode == "commit":
        commit(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
