"""The rows of the second speed step, each beside its baseline measured in the same run.

Each function takes the runner (``Bench`` in ``__main__``) and returns rows as keyword
dictionaries for its ``Row``; ``__main__`` registers them by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from .common import Worker, start_server

RowFields = dict[str, Any]


class Runner(Protocol):
    quick: bool
    workdir: Path

    def size(self, full: int, quick: int) -> int: ...

    async def echo(self, mode: str, count: int) -> dict[str, float]: ...

    async def delivery(
        self, mode: str, kind: str, count: int, relay: bool = False
    ) -> dict[str, float]: ...


async def senders(bench: Runner) -> list[RowFields]:
    """N concurrent ``send()`` calls beside ``send_many(N)``, in turns in one process."""
    count = bench.size(20_000, 2_000)
    rounds = 2 if bench.quick else 3
    server, port = await start_server("--memory", "--relay-rate", "off")
    workers: list[Worker] = []
    try:
        receiver = await Worker.start("chat", "receiver", str(port), "sqlite", str(bench.workdir))
        workers.append(receiver)
        await receiver.read()
        args = [str(port), "sqlite", str(bench.workdir), str(count), str(rounds)]
        sender = await Worker.start("speed", "senders", *args)
        workers.append(sender)
        got = (await sender.read(600))["result"]
    finally:
        for worker in workers:
            await worker.stop()
        await server.stop()
    return [
        {
            "name": f"{count} concurrent send() (gather) vs send_many(), s until acked",
            "value": got["gather"],
            "unit": "s",
            "baseline": got["many"],
            "target": "<= 1.5x",
            "met": got["gather"] <= 1.5 * got["many"],
            "notes": {
                "gather_stored_s": got["gather_stored"],
                "send_many_stored_s": got["many_stored"],
            },
        }
    ]


async def one_fsync(bench: Runner) -> list[RowFields]:
    """Awaited sends beside 1 / (one commit + one round trip), both measured alone."""
    count = bench.size(2_000, 200)
    worker = await Worker.start("speed", "commit", str(bench.workdir), str(count))
    try:
        commit = (await worker.read(300))["result"]
    finally:
        await worker.stop()
    trip = await bench.echo("awaited", count)
    got = await bench.delivery("awaited", "sqlite", count)
    floor_ms = commit["p50_ms"] + trip["p50_ms"]
    return [
        {
            "name": "one at a time, awaited until acked, vs 1/(commit p50 + round trip p50)",
            "value": got["per_second"],
            "unit": "msg/s",
            "baseline": 1000 / floor_ms,
            "target": ">= 0.5, p99 <= 3x p50",
            "met": got["per_second"] >= 0.5 * 1000 / floor_ms
            and got["p99_ms"] <= 3 * got["p50_ms"],
            "notes": {
                "p50_ms": got["p50_ms"],
                "p99_ms": got["p99_ms"],
                "commit_p50_ms": commit["p50_ms"],
                "commit_p99_ms": commit["p99_ms"],
                "round_trip_p50_ms": trip["p50_ms"],
            },
        }
    ]


Make = Callable[[Runner], Awaitable[list[RowFields]]]

ROWS: dict[str, Make] = {"senders": senders, "fsync": one_fsync}
"""The rows by the name ``--only`` takes."""
