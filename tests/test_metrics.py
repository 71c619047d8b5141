"""The metrics endpoint, scraped as Prometheus would: the counters move as the server
works, every series names its node, two servers in one process count apart, and
``/healthz`` says whether the node can reach its cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import p2pchat

from .conftest import RawClient, connect, eventually

RawFactory = Callable[[int], Awaitable[RawClient]]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(server: p2pchat.SignallingServer, path: str = "/metrics") -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.metrics_port}{path}") as answer,
    ):
        return answer.status, await answer.text()


async def values(server: p2pchat.SignallingServer) -> Samples:
    """Every sample, by (name, labels)."""
    status, text = await scrape(server)
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.labels.get("node") == server.node_id  # every series names its node
            samples[sample.name, frozenset(sample.labels.items())] = float(sample.value)
    return samples


def get(samples: Samples, name: str, **labels: str) -> float:
    for (sample, sample_labels), value in samples.items():
        if sample == name and set(labels.items()) <= sample_labels:
            return value
    return 0.0


async def test_counters_move_as_the_server_works(raw_clients: RawFactory) -> None:
    async with p2pchat.SignallingServer(port=0, node_id="one", metrics=("127.0.0.1", 0)) as server:
        where = ("127.0.0.1", server.port)
        before = await values(server)
        assert get(before, "p2pchat_logins_total") == 0
        assert get(before, "p2pchat_sessions") == 0
        async with (
            p2pchat.Peer("alice", server=where) as alice,
            p2pchat.Peer("bob", server=where) as bob,
        ):
            twin = p2pchat.Peer("alice", server=where, identity=alice.identity)
            with pytest.raises(p2pchat.NameTaken):
                await twin.start()
            await alice.online()
            chat_a, chat_b = await connect(alice, bob)
            await chat_a.close()
            await chat_b.wait_closed()
            inviting = asyncio.create_task(bob.invite("alice", timeout=10))
            await (await asyncio.wait_for(alice.next_invitation(), 5)).refuse("busy")
            with pytest.raises(p2pchat.InviteRefused):
                await inviting
            bad = await raw_clients(server.port)
            await bad.send_frame(b"{not json")
            assert await bad.closed_by_other_side()
            carol = p2pchat.Peer("carol", server=where)
            async with carol:
                pass
            await alice.send("carol", "for later")
            await eventually(lambda: server.mail.deposits == 1)
            now = await values(server)
            assert get(now, "p2pchat_logins_total") == 3
            assert get(now, "p2pchat_sessions") == 2
            assert get(now, "p2pchat_online_users") == 2
            assert get(now, "p2pchat_connections") == 2
            assert get(now, "p2pchat_refusals_total", reason="name_taken") == 1
            assert get(now, "p2pchat_invitations_total", outcome="sent") == 2
            assert get(now, "p2pchat_invitations_total", outcome="accepted") == 1
            assert get(now, "p2pchat_invitations_total", outcome="refused") == 1
            assert get(now, "p2pchat_protocol_errors_total", code="protocol_error") == 1
            assert get(now, "p2pchat_mail_deposits_total") == 1
            assert get(now, "p2pchat_mail_deposited_bytes_total") > 0
            assert get(now, "p2pchat_mailbox_items") == 1
            assert get(now, "p2pchat_mailbox_bytes") > 0
            assert get(now, "p2pchat_request_seconds_count", request="listusers") >= 1
            assert get(now, "p2pchat_request_seconds_bucket", request="invite", le="+Inf") == 2
            status, health = await scrape(server, "/healthz")
            assert status == 200
            assert '"status": "ok"' in health
        await eventually(lambda: server.connection_count == 0)
        after = await values(server)
        assert get(after, "p2pchat_sessions") == 0
        assert get(after, "p2pchat_logins_total") == 3  # counters do not go down


async def test_two_servers_in_one_process_count_apart() -> None:
    left = p2pchat.SignallingServer(port=0, node_id="left", metrics=("127.0.0.1", 0))
    right = p2pchat.SignallingServer(port=0, node_id="right", metrics=("127.0.0.1", 0))
    async with left, right, p2pchat.Peer("alice", server=("127.0.0.1", left.port)):
        assert get(await values(left), "p2pchat_logins_total") == 1
        assert get(await values(right), "p2pchat_logins_total") == 0
