"""Three real ``p2pchat-server --redis`` processes on one real Redis: peers on different
nodes chat (directly and through a relay), ``ls`` is the same everywhere, a name is
logged in once, and a node killed with SIGKILL is survived: its users show offline
elsewhere, come back through another node, and mail written meanwhile arrives once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import p2pchat
from p2pchat.frontends.demo import ScriptedProcess, command

from .conftest import Launch, connect, eventually

UNREACHABLE = [("127.0.0.1", 1)]


@dataclass
class Node:
    name: str
    process: ScriptedProcess
    port: int
    metrics_port: int

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


async def start_node(launch: Launch, redis_url: str, prefix: str, name: str, *options: str) -> Node:
    process = await launch(
        f"node-{name}",
        [
            "env",
            f"P2PCHAT_REDIS={redis_url}",  # not in the server's argv: it holds the password
            *command("p2pchat-server"),
            "--port",
            "0",
            "--redis-prefix",
            prefix,
            "--node-id",
            name,
            "--metrics",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "0.5",
            "--node-ttl",
            "3",
            *options,
        ],
    )
    port = int((await process.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
    metrics = int((await process.expect(r"metrics on http://127\.0\.0\.1:(\d+)/")).group(1))
    process.drain = asyncio.ensure_future(_drain(process))  # type: ignore[attr-defined]
    return Node(name, process, port, metrics)


async def _drain(process: ScriptedProcess) -> None:
    """Keep reading what a node prints (its log): a full pipe would stop it."""
    stdout = process.process.stdout
    assert stdout is not None
    while line := await stdout.readline():
        process.output.append(line.decode(errors="replace").rstrip("\n"))
        del process.output[:-200]


async def scrape(node: Node, path: str = "/metrics") -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{node.metrics_port}{path}") as answer,
    ):
        return answer.status, await answer.text()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with ``labels`` (0 if absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture
async def nodes(launch: Launch, redis_url: str, redis_prefix: str) -> list[Node]:
    """Three nodes, A, B and C (stopped by the launch fixture, by PID)."""
    return [await start_node(launch, redis_url, redis_prefix, name) for name in "ABC"]


def fast(name: str, *nodes: Node, **kwargs: object) -> p2pchat.Peer:
    return p2pchat.Peer(
        name,
        server=[n.address for n in nodes],
        reconnect_delay=(0.05, 0.5),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_three_nodes_one_redis_and_a_node_killed(
    nodes: list[Node], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, c = nodes
    alice, bob, carol = fast("alice", a), fast("bob", b, c), fast("carol", c)
    dave, erin = fast("dave", a, advertise=UNREACHABLE, traversal=False), fast("erin", b)
    everyone = sorted(["alice", "bob", "carol", "dave", "erin"])
    async with alice, bob, carol, dave, erin:
        # Every node lists the same users, whichever node each is on.
        for someone in (alice, bob, carol, dave, erin):
            assert await someone.online() == everyone

        # alice on A, bob on B: a direct talk.
        chat_a, chat_b = await connect(alice, bob)
        assert chat_a.route == chat_b.route == "direct"
        await chat_a.send("hello from node A")
        assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "hello from node A"
        await chat_b.send("hello from node B")
        assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "hello from node B"

        # dave on A cannot be dialled: erin (on B) joins him through B's relay.
        chat_d, chat_e = await connect(dave, erin)
        assert chat_d.route == chat_e.route == "relay"
        await chat_d.send("through the relay")
        assert (await asyncio.wait_for(chat_e.receive(), 5)).body == "through the relay"
        await chat_e.send("and back")
        assert (await asyncio.wait_for(chat_d.receive(), 5)).body == "and back"
        _, text_b = await scrape(b)
        _, text_a = await scrape(a)
        assert metric(text_b, "p2pchat_relayed_bytes_total", node="B") > 0  # held by B...
        assert metric(text_a, "p2pchat_relayed_bytes_total", node="A") == 0  # ...not by A
        assert metric(text_a, "p2pchat_online_users", node="A") == len(everyone)

        # A second login of alice, on C, is refused: she is logged in on A.
        twin = p2pchat.Peer("alice", server=c.address, identity=alice.identity)
        with pytest.raises(p2pchat.NameTaken):
            await twin.start()

        # Node B dies. bob (who also knows C) comes back through C; erin (B only) does not.
        await chat_a.close()
        await chat_b.wait_closed()
        news: list[bool] = []
        alice.on_presence = lambda user, online: news.append(online) if user == "bob" else None
        killed = time.monotonic()
        os.kill(b.process.process.pid, signal.SIGKILL)
        await b.process.process.wait()
        letter = await alice.send("bob", "written while his node was down")  # by mail
        await eventually(lambda: news == [False, True], timeout=10)  # offline, then online
        await eventually(lambda: bob.state == "connected", timeout=10)
        back = time.monotonic() - killed
        assert back < 10
        assert bob.server_address == c.address
        got = await asyncio.wait_for(bob.next_message(), 10)
        assert (got.id, got.body) == (letter.id, "written while his node was down")
        second = await alice.send("bob", "and a second one")
        again = await asyncio.wait_for(bob.next_message(), 10)
        assert again.id == second.id  # the first is not handed over twice
        mine = [m for m in await bob.history("alice") if m.id == letter.id]
        assert len(mine) == 1
        survivors = [n for n in everyone if n != "erin"]
        await eventually(lambda: _listed(alice, survivors), timeout=10)
        assert await carol.online() == survivors  # the same on node C
        status, health = await scrape(c, "/healthz")
        assert status == 200
        assert '"node": "C"' in health or '"node":"C"' in health
    with capsys.disabled():
        sys.stderr.write(f"\ncluster: node B SIGKILLed; bob back online via C in {back:.1f} s\n")


async def _listed(peer: p2pchat.Peer, names: list[str]) -> bool:
    return await peer.online() == names
