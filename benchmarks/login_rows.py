"""The logins rows: N peers logged in to one node at once, beside plain TCP at that size.

At each level (``--levels``; by default 1,000, 15,000 and 100,000) the real
``p2pchat-server`` takes N first logins (hello, challenge, signature, welcome) from
client processes (``logins.py``) of about 12,500 clients each, every process dialling
from a loopback address of its own (127.0.0.2, ...: one address has only some 28,000
source ports towards one server port). Then, with all N online:

- one client asks for ``list`` again and again: how long an answer takes, and how big
  it is (the server sends at most ``max_list`` names, however many are online);
- 1,000 more users log in and out (every login and logout is presence news): the
  server's CPU for each, beside the same at the first level (presence is told to
  watchers only beyond ``presence_broadcast`` online: a login must not cost O(online));
  then the same users again, returning (their mailbox key is known: one signature
  check, not two).

Then the baseline: a plain asyncio server, and the same processes from the same
addresses opening N connections, each making one round trip (a frame, its ack). Each
side's rate is N over the time from the first start to the last end; memory and CPU are
the server's, from /proc. The file-descriptor limits are raised here (the server and
every worker inherit them); a machine where they cannot be (not root) gets the row
skipped, saying why.
"""

from __future__ import annotations

import logging
import os
import resource
from dataclasses import dataclass

from .common import (
    Worker,
    cpu_seconds,
    ephemeral_ports,
    loopback_sources,
    raise_fd_limit,
    rss_kib,
    start_server,
)
from .speed_rows import RowFields, Runner

__all__ = ["logins"]

logger = logging.getLogger("benchmarks")

LEVELS = [1_000, 15_000, 100_000]
JUDGED = 10_000
PER_PROCESS = 12_500
GATE = 256  # dialling at once in each process, for p2pchat and the baseline alike
CHURN = 1_000
PROBES = 200


@dataclass
class Plan:
    """How one level is spread over client processes and source addresses."""

    level: int
    sources: list[str]

    def shares(self) -> list[tuple[int, int, str]]:
        """(first user number, how many, source address) for each process."""
        parts = len(self.sources)
        return [
            (n * self.level // parts, (n + 1) * self.level // parts - n * self.level // parts, s)
            for n, s in enumerate(self.sources)
        ]


def plan(level: int) -> Plan | str:
    """The processes and addresses for ``level`` peers, or why this machine cannot."""
    ports = ephemeral_ports() * 3 // 4  # some are in TIME_WAIT from the level before
    parts = max(4, -(-level // PER_PROCESS), -(-level // ports))
    sources = loopback_sources(parts)
    if isinstance(sources, str):
        return sources
    wanted = level + CHURN + 512  # the server holds them all, and a few files of its own
    if (limit := raise_fd_limit(wanted)) < wanted:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        who = "root without CAP_SYS_RESOURCE" if os.geteuid() == 0 else "not root"
        return (
            f"{wanted:,} open files needed, {limit:,} allowed: the hard limit is {hard:,} and "
            f"this process may not raise it ({who})"
        )
    return Plan(level, sources)


async def logins(bench: Runner) -> list[RowFields]:
    levels = bench.levels or ([200] if bench.quick else LEVELS)
    rows: list[RowFields] = []
    first_churn: float | None = None
    for level in levels:
        chosen = plan(level)
        if isinstance(chosen, str):
            logger.warning("logins, %d peers: skipped: %s", level, chosen)
            rows.append(skipped(level, chosen))
            continue
        got = await p2pchat_level(bench, chosen, flood=level == levels[0])
        base = await baseline_level(chosen)
        rows.extend(level_rows(level, got, base, first_churn))
        first_churn = first_churn if first_churn is not None else got["churn_cpu_us"]
    return rows


def skipped(level: int, why: str) -> RowFields:
    return {
        "name": f"logins, {level:,} peers at once",
        "value": float("nan"),
        "unit": "logins/s",
        "target": f"skipped: {why}",
    }


def level_rows(
    level: int, got: dict[str, float], base: dict[str, float], first_churn: float | None
) -> list[RowFields]:
    # Issue 23's targets, for 100,000 peers, are of a kind to hold at every size (logins at
    # half the rate of plain TCP at that size, at most 8 KiB each): judged from JUDGED
    # peers on, where what a server holds anyway no longer weighs on each peer.
    judged = level >= JUDGED
    rows: list[RowFields] = [
        {
            "name": f"logins, {level:,} peers at once (baseline: TCP connect and a round trip)",
            "value": got["per_second"],
            "unit": "logins/s",
            "baseline": base["per_second"],
            "target": ">= 0.5 of baseline" if judged else "",
            "met": got["per_second"] >= 0.5 * base["per_second"] if judged else None,
            "notes": {
                "server CPU per login, us": got["cpu_us"],
                "baseline server CPU per connection, us": base["cpu_us"],
                "clients' CPU per login, us": got["client_cpu_us"],
                "baseline clients' CPU per connection, us": base["client_cpu_us"],
                "seconds": got["seconds"],
                "client processes": got["processes"],
            },
        },
        {
            "name": f"server memory per logged-in peer, {level:,} peers",
            "value": got["rss_kib"],
            "unit": "KiB",
            "baseline": base["rss_kib"],
            "target": "<= 8 KiB" if judged else "",
            "met": got["rss_kib"] <= 8 if judged else None,
        },
        {
            "name": f"list with {level:,} online, one client, one at a time: p50",
            "value": got["list_p50_ms"],
            "unit": "ms",
            "notes": {
                "p99, ms": got["list_p99_ms"],
                "names in the answer": got["list_names"],
                "answer, bytes": got["list_bytes"],
            },
        },
        {
            "name": f"a login and a logout with {level:,} online: server CPU"
            + (" (baseline: the first level's)" if first_churn is not None else ""),
            "value": got["churn_cpu_us"],
            "unit": "us",
            "baseline": first_churn,
            "target": "<= 1.5x the first level's" if first_churn is not None else "",
            "met": got["churn_cpu_us"] <= 1.5 * first_churn if first_churn is not None else None,
            "notes": {
                "their logins, per second": got["churn_per_second"],
                "the same users again (returning): server CPU, us": got["return_cpu_us"],
            },
        },
    ]
    if "lists_per_second" in got:
        rows.append(
            {
                "name": f"list requests, {level:,} clients at once (rate limit off)",
                "value": got["lists_per_second"],
                "unit": "lists/s",
            }
        )
    return rows


def cpu_of(workers: list[Worker]) -> float:
    """The CPU seconds these processes have used, together."""
    return sum(cpu_seconds(worker.pid) for worker in workers)


async def start_workers(module: str, arguments: list[list[str]]) -> list[Worker]:
    """Worker processes, each given its arguments, once every one is ready."""
    workers: list[Worker] = []
    try:
        for args in arguments:
            workers.append(await Worker.start(module, *args))
        for worker in workers:
            await worker.read(600)  # identities made
    except BaseException:
        for worker in workers:
            await worker.stop()
        raise
    return workers


async def together(workers: list[Worker], command: str) -> dict[str, float]:
    """Tell every worker ``command``; the rate from the first start to the last end."""
    for worker in workers:
        await worker.tell(command)
    results = [(await worker.read(900))["result"] for worker in workers]
    started = min(r["started"] for r in results)
    seconds = max(r["ended"] for r in results) - started
    count = sum(r["count"] for r in results)
    return {"seconds": seconds, "per_second": count / seconds}


async def p2pchat_level(bench: Runner, chosen: Plan, *, flood: bool) -> dict[str, float]:
    level = chosen.level
    server, port = await start_server(
        "--db",
        str(bench.workdir / f"logins-{level}.sqlite3"),
        "--max-connections",
        str(level + CHURN + 1000),
        "--backlog",
        "4096",
        "--rate-limit",
        "off",
    )
    workers: list[Worker] = []
    try:
        workers = await start_workers(
            "logins",
            [
                [str(port), str(first), str(count), source, str(GATE)]
                for first, count, source in chosen.shares()
            ],
        )
        churn = await start_workers(
            "logins", [[str(port), "1000000", str(CHURN), chosen.sources[0], str(GATE)]]
        )
        workers.extend(churn)
        rss, cpu, clients = rss_kib(server.pid), cpu_seconds(server.pid), cpu_of(workers[:-1])
        got = await together(workers[:-1], "login")
        got["cpu_us"] = (cpu_seconds(server.pid) - cpu) / level * 1e6
        got["client_cpu_us"] = (cpu_of(workers[:-1]) - clients) / level * 1e6
        got["rss_kib"] = (rss_kib(server.pid) - rss) / level
        got["processes"] = len(chosen.sources)
        await workers[0].tell(f"probe {PROBES}")
        probe = (await workers[0].read(300))["result"]
        got |= {f"list_{key}": value for key, value in probe.items()}
        cpu = cpu_seconds(server.pid)
        churned = await together(churn, "login")
        await together(churn, "logout")
        got["churn_cpu_us"] = (cpu_seconds(server.pid) - cpu) / CHURN * 1e6
        got["churn_per_second"] = churned["per_second"]
        cpu = cpu_seconds(server.pid)
        await together(churn, "login")  # the same users again: returning
        await together(churn, "logout")
        got["return_cpu_us"] = (cpu_seconds(server.pid) - cpu) / CHURN * 1e6
        if flood:
            seconds = 2.0 if bench.quick else 5.0
            for worker in workers[:-1]:
                await worker.tell(f"list {seconds}")
            answers = sum([(await w.read(120))["result"]["answers"] for w in workers[:-1]])
            got["lists_per_second"] = answers / seconds
        return got
    finally:
        for worker in workers:
            await worker.tell("quit")
            await worker.stop()
        await server.stop()


async def baseline_level(chosen: Plan) -> dict[str, float]:
    """Plain TCP at the same size, from the same processes and addresses."""
    server = await Worker.start("echo", "server")
    clients: list[Worker] = []
    try:
        ready = await server.read()
        cpu = cpu_seconds(server.pid)
        clients = await start_workers(
            "echo",
            [
                ["connect", str(ready["port"]), str(count), source, str(GATE)]
                for _, count, source in chosen.shares()
            ],
        )
        before = cpu_of(clients)
        got = await together(clients, "go")
        return {
            "per_second": got["per_second"],
            "client_cpu_us": (cpu_of(clients) - before) / chosen.level * 1e6,
            "rss_kib": (rss_kib(server.pid) - ready["rss"]) / chosen.level,
            "cpu_us": (cpu_seconds(server.pid) - cpu) / chosen.level * 1e6,
        }
    finally:
        for client in clients:
            await client.stop()
        await server.stop()
