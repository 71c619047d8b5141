"""A group of 16 on loopback: ``python -m benchmarks.groups DIR COUNT``.

One process: a server and 16 peers on SQLite files; the admin (alice) talks with each of
the 15 others (direct TLS conversations), creates the group, and sends COUNT messages at
once (``send_many``), then one more, alone. Measured: messages per second until every
member has stored all of them (each member's acknowledgement, sent once it has stored
them, counted by ``on_shipped``), and the time for the one message to be stored by all 16.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import p2pchat

from .common import say

MEMBERS = 16
OPEN = {"rate_limit": None, "deposit_rate": None, "receipt_rate": None}


async def _connect(alice: p2pchat.Peer, other: p2pchat.Peer) -> None:
    inviting = asyncio.create_task(alice.invite(other.name, timeout=30))
    await (await other.next_invitation()).accept()
    await inviting


class Acks:
    """Counts, per member, the messages of ours it has acknowledged (stored)."""

    def __init__(self, members: list[str]) -> None:
        self.counts = dict.fromkeys(members, 0)
        self.changed = asyncio.Event()

    def __call__(self, member: str, ids: list[str]) -> None:
        self.counts[member] += len(ids)
        self.changed.set()

    async def all_reach(self, count: int) -> None:
        while min(self.counts.values()) < count:
            self.changed.clear()
            await self.changed.wait()


async def main(directory: Path, count: int) -> None:
    async with p2pchat.SignallingServer(port=0, **OPEN) as server:  # type: ignore[arg-type]
        peers = [
            p2pchat.Peer(
                f"m{n:02d}",
                server=("127.0.0.1", server.port),
                store=p2pchat.SqliteMessageStore(directory / f"m{n:02d}.sqlite3"),
                max_queue=1 << 16,
            )
            for n in range(MEMBERS)
        ]
        for peer in peers:
            await peer.start()
        try:
            alice, others = peers[0], peers[1:]
            for other in others:
                await _connect(alice, other)
            acks = Acks([p.name for p in others])
            alice.on_shipped = acks
            group = await alice.create_group("bench", [p.name for p in others])
            for other in others:
                await other.next_group()
            await group.send_many(f"warm {n}" for n in range(50))
            await acks.all_reach(51)  # the notice, and the warm-up

            body = "x" * 100
            started = time.perf_counter()
            await group.send_many(body for _ in range(count))
            await acks.all_reach(51 + count)
            elapsed = time.perf_counter() - started

            started = time.perf_counter()
            await group.send("one")
            await acks.all_reach(52 + count)
            one = time.perf_counter() - started
            say(result={"per_second": count / elapsed, "all_stored_ms": one * 1000})
        finally:
            for peer in peers:
                await peer.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
