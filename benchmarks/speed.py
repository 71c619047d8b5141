"""Workers for the rows of the second speed step: concurrent senders, the fsync on the path.

``python -m benchmarks.speed senders PORT STORE DIR COUNT ROUNDS``: alice invites bob (a
``benchmarks.chat receiver``) and times, in turns within one run, ``send_many(COUNT)``
and ``COUNT`` concurrent ``send()`` calls (``asyncio.gather``), each until acknowledged.

``python -m benchmarks.speed invitations PORT SECONDS PAIRS``: PAIRS pairs of peers, each
logged in once, each pair in a loop: invite, accept, a first message, close (the cost of
the server and the protocol, not of starting peers); counts the rounds.

``python -m benchmarks.speed mail PORT DIR COUNT``: bob logs in once and leaves; alice
writes him COUNT messages one after another (each send awaited); bob comes back and
reads them all; times the writing, and from its end until bob has every one.

``python -m benchmarks.speed commit DIR COUNT``: one SQLite commit of one message row
(WAL, ``synchronous = FULL``, the peer's schema), measured alone, COUNT times.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import statistics
import sys
import time
import uuid
from importlib import resources
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


async def invitations(port: int, seconds: float, pairs: int) -> None:
    """Rounds on long-lived peers until the time is up; names unique per process."""
    where = ("127.0.0.1", port)
    tag = f"i{os.getpid()}"
    peers = [
        (p2pchat.Peer(f"{tag}a{n}", server=where), p2pchat.Peer(f"{tag}b{n}", server=where))
        for n in range(pairs)
    ]
    async with contextlib.AsyncExitStack() as stack:
        for a, b in peers:
            await stack.enter_async_context(a)
            await stack.enter_async_context(b)
        rounds = 0
        times: list[float] = []

        async def loop(a: p2pchat.Peer, b: p2pchat.Peer) -> None:
            nonlocal rounds
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                inviting = asyncio.create_task(a.invite(b.name, timeout=30))
                chat_b = await (await b.next_invitation()).accept()
                chat_a = await inviting
                await chat_a.send("hi")
                await chat_b.receive()
                await chat_a.close()
                await chat_b.wait_closed()
                times.append(time.perf_counter() - started)
                rounds += 1

        say(ready=True)
        sys.stdin.readline()  # all processes start together
        started = time.perf_counter()
        cpu = time.process_time()
        deadline = started + seconds
        await asyncio.gather(*(loop(a, b) for a, b in peers))
        say(
            result={
                "rounds": rounds,
                "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu,
                "p50_ms": percentile(times, 0.5) * 1000,
            }
        )


async def mail(port: int, directory: Path, count: int) -> None:
    where = ("127.0.0.1", port)
    alice_id, bob_id = p2pchat.Identity.generate(), p2pchat.Identity.generate()

    def peer(name: str, identity: p2pchat.Identity) -> p2pchat.Peer:
        path = directory / f"mail-{name}-{os.getpid()}.sqlite3"
        return p2pchat.Peer(
            name, server=where, store=p2pchat.SqliteMessageStore(path), identity=identity
        )

    async with peer("bob", bob_id):
        pass  # known to the server, with his mailbox key
    async with peer("alice", alice_id) as alice:
        started = time.perf_counter()
        for n in range(count):
            await alice.send("bob", f"message {n}")
        written = time.perf_counter()
        async with peer("bob", bob_id) as bob:
            for _ in range(count):
                await bob.next_message()
        collected = time.perf_counter()
    say(result={"write_s": written - started, "collected_s": collected - written})


def commit(directory: Path, count: int) -> None:
    """One message row per transaction, each fsynced: in a bare table, and in the peer's
    schema (its indexes) as its store writes it, but with no thread and no event loop."""
    say(
        result={
            "bare": _commits(directory, count, peer=False),
            "peer": _commits(directory, count, peer=True),
        }
    )


def _commits(directory: Path, count: int, *, peer: bool) -> dict[str, float]:
    path = directory / f"commit-{uuid.uuid4().hex}.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    if peer:
        schema = resources.files("p2pchat.stores").joinpath("schema")
        for version in range(1, p2pchat.SqliteMessageStore.VERSION + 1):
            sql = schema.joinpath(f"messages-{version}.sql").read_text(encoding="utf-8")
            db.executescript(f"BEGIN;\n{sql}\nCOMMIT;")
    else:
        db.execute(
            "CREATE TABLE messages (seq INTEGER PRIMARY KEY, id TEXT, sender TEXT,"
            " recipient TEXT, body TEXT, sent_at REAL, shipped INTEGER, UNIQUE (id, sender))"
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
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {
        "p50_ms": percentile(times, 0.5) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
    }


def main() -> None:
    mode = sys.argv[1]
    if mode == "senders":
        port, kind, directory = int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
        count, rounds = int(sys.argv[5]), int(sys.argv[6])
        asyncio.run(senders(port, kind, directory, count, rounds))
    elif mode == "invitations":
        asyncio.run(invitations(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
    elif mode == "mail":
        asyncio.run(mail(int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])))
    elif mode == "commit":
        commit(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
