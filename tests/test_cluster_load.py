"""A bounded load test of a cluster: three ``p2pchat-server --redis`` processes hold
3 x 1,000 peers together (lean login-only clients, ``login_worker.py``, one process per
node), every node lists the same users and counts all of them. Reports logins/s and the
nodes' memory."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from benchmarks.common import rss_kib

from p2pchat.protocol import ListUsers, Users

from .conftest import Launch, RawClient, eventually
from .test_cluster_nodes import Node, metric, scrape, start_node

PER_NODE = 1000
DEFAULT_HEARTBEAT = ("--heartbeat-interval", "1", "--node-ttl", "5")
WORKER = Path(__file__).with_name("login_worker.py")


class Worker:
    """One login_worker.py process: commands in, JSON lines out, stopped by its PID."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, port: int, first: int, count: int) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            str(port),
            str(first),
            str(count),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise AssertionError(f"login_worker.py (pid {self.process.pid}) ended early")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def test_three_nodes_hold_three_thousand_peers(
    launch: Launch, redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    nodes: list[Node] = [
        await start_node(launch, redis_url, redis_prefix, n, "--redis-timeout", "30") for n in "ABC"
    ]
    pids = [node.process.process.pid for node in nodes]
    workers: list[Worker] = []
    try:
        async with asyncio.timeout(240):  # bounded: the whole run, or the test fails
            for n, node in enumerate(nodes):
                workers.append(await Worker.start(node.port, n * PER_NODE, PER_NODE))
            for worker in workers:
                await worker.read(120)  # identities made
            idle = [rss_kib(pid) for pid in pids]
            started = time.perf_counter()
            for worker in workers:
                await worker.tell("login")
            results = [(await worker.read(180))["result"] for worker in workers]
            took = time.perf_counter() - started
            assert sum(r["count"] for r in results) == 3 * PER_NODE
            loaded = [rss_kib(pid) for pid in pids]
            total = 3 * PER_NODE
            for node in nodes:  # every node counts everyone, and holds its third
                await eventually(lambda: _counts(node, total), timeout=20)  # noqa: B023
            listers = [await RawClient.open(node.port) for node in nodes]
            lists = []
            try:
                for lister, node in zip(listers, nodes, strict=True):
                    await lister.login(f"lister{node.name}", 1)
                for lister in listers:  # every node lists the same names
                    await lister.send(ListUsers(id="1"))
                    answer = await lister.recv_until(Users, timeout=30)
                    lists.append((answer.users, answer.truncated))
            finally:
                for lister in listers:
                    await lister.close()
            assert lists[0] == lists[1] == lists[2]
            assert lists[0][1] is True  # 3,000 and more: the first max_list (1,000) shown
    finally:
        for worker in workers:
            await worker.stop()
    with capsys.disabled():
        sys.stderr.write(
            f"\ncluster load: {total} peers logged in to 3 nodes in {took:.1f} s "
            f"({total / took:.0f} logins/s, slowest node's clients "
            f"{max(r['seconds'] for r in results):.1f} s, {sum(r['retries'] for r in results)} "
            "logins refused for now and tried again); node memory idle "
            f"{', '.join(f'{m / 1024:.0f}' for m in idle)} MiB, with {PER_NODE} peers each "
            f"{', '.join(f'{m / 1024:.0f}' for m in loaded)} MiB\n"
        )


async def _counts(node: Node, total: int) -> bool:
    _, text = await scrape(node)
    return (
        metric(text, "p2pchat_online_users", node=node.name) == total
        and metric(text, "p2pchat_sessions", node=node.name) == PER_NODE
    )
