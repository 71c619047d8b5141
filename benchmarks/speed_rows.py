"""The rows of the second speed step, each beside its baseline measured in the same run.

Each function takes the runner (``Bench`` in ``__main__``) and returns rows as keyword
dictionaries for its ``Row``; ``__main__`` registers them by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from .common import Worker, cpu_seconds, start_server

RowFields = dict[str, Any]


class Runner(Protocol):
    quick: bool
    workdir: Path
    levels: list[int] | None

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
        commits = (await worker.read(300))["result"]
    finally:
        await worker.stop()
    trip = await bench.echo("awaited", count)
    got = await bench.delivery("awaited", "sqlite", count)
    commit = commits["bare"]
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
                "commit_peer_schema_p50_ms": commits["peer"]["p50_ms"],
                "round_trip_p50_ms": trip["p50_ms"],
            },
        }
    ]


async def invitations(bench: Runner) -> list[RowFields]:
    """Invite, accept, a first message, close, on peers logged in once; 2 processes."""
    seconds = 2.0 if bench.quick else 10.0
    server, port = await start_server("--memory", "--rate-limit", "off")
    workers: list[Worker] = []
    try:
        for _ in range(2):
            workers.append(
                await Worker.start("speed", "invitations", str(port), str(seconds), "16")
            )
        for worker in workers:
            await worker.read(120)  # logged in
        server_cpu = cpu_seconds(server.pid)
        for worker in workers:
            await worker.tell("go")
        results = [(await w.read(seconds + 120))["result"] for w in workers]
        server_cpu = cpu_seconds(server.pid) - server_cpu
    finally:
        for worker in workers:
            await worker.stop()
        await server.stop()
    rounds = sum(r["rounds"] for r in results)
    rate = rounds / max(r["seconds"] for r in results)
    return [
        {
            "name": "invitations on long-lived peers (invite, accept, a message, close)",
            "value": rate,
            "unit": "rounds/s",
            "target": ">= 1000/s",
            "met": rate >= 1000,
            "notes": {
                "p50_ms": max(r["p50_ms"] for r in results),
                "peer_cpu_ms_per_round": 1000 * sum(r["cpu_seconds"] for r in results) / rounds,
                "server_cpu_ms_per_round": 1000 * server_cpu / rounds,
            },
        }
    ]


async def mail(bench: Runner) -> list[RowFields]:
    """500 messages written to someone away, then collected: the server's default limits
    (deposits 10/s after a burst of 100), on SQLite."""
    count = 500
    server, port = await start_server("--db", str(bench.workdir / "mail-server.sqlite3"))
    try:
        worker = await Worker.start("speed", "mail", str(port), str(bench.workdir), str(count))
        try:
            got = (await worker.read(300))["result"]
        finally:
            await worker.stop()
    finally:
        await server.stop()
    return [
        {
            "name": f"mail burst: {count} messages to someone away, s from written to collected",
            "value": got["collected_s"],
            "unit": "s",
            "target": "<= 2 s",
            "met": got["collected_s"] <= 2.0,
            "notes": {"writing_s": got["write_s"]},
        }
    ]


Make = Callable[[Runner], Awaitable[list[RowFields]]]

ROWS: dict[str, Make] = {
    "senders": senders,
    "fsync": one_fsync,
    "invitations": invitations,
    "mail": mail,
}
"""The rows by the name ``--only`` takes."""
