"""Several server nodes in this process sharing one real Redis: any node serves any user,
invitations and their answers cross nodes, names are unique across nodes, the relay is
held by one node and both peers join it there, and garbage in Redis is survived.

(Nodes as separate processes, killed with SIGKILL, are in ``test_cluster_nodes.py``.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import p2pchat
from p2pchat.cluster.redis_client import RedisClient
from p2pchat.cluster.redis_cluster import RedisCluster

from .conftest import NodeFactory, PeerMaker, connect, eventually, require
from .redisserver import RedisServer, redis_available

UNREACHABLE = [("127.0.0.1", 1)]  # an advertised address where nobody listens


async def test_an_invitation_and_its_answer_cross_nodes(node: NodeFactory, peer: PeerMaker) -> None:
    a, b, c = await node("A"), await node("B"), await node("C")
    alice, bob = await peer("alice", a), await peer("bob", b)
    carol = await peer("carol", c)
    for someone in (alice, bob, carol):  # the same list, whichever node answers
        assert await someone.online() == ["alice", "bob", "carol"]
    assert (a.online_users, b.online_users, c.online_users) == (["alice"], ["bob"], ["carol"])
    chat_a, chat_b = await connect(alice, bob)
    assert chat_a.route == chat_b.route == "direct"
    await chat_a.send("across nodes")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "across nodes"
    # A refusal crosses nodes too.
    inviting = asyncio.create_task(carol.invite("alice", timeout=10))
    invitation = await asyncio.wait_for(alice.next_invitation(), 5)
    await invitation.refuse("not now")
    with pytest.raises(p2pchat.InviteRefused, match="not now"):
        await inviting


async def test_a_name_is_logged_in_once_across_nodes(node: NodeFactory, peer: PeerMaker) -> None:
    a, c = await node("A"), await node("C")
    alice = await peer("alice", a)
    twin = p2pchat.Peer("alice", server=("127.0.0.1", c.port), identity=alice.identity)
    with pytest.raises(p2pchat.NameTaken, match="alice is logged in already"):
        await twin.start()
    impostor = p2pchat.Peer("alice", server=("127.0.0.1", c.port))  # another key
    with pytest.raises(p2pchat.AuthenticationError):
        await impostor.start()
    assert c.stats.refusals["name_taken"] == 1
    assert await alice.online() == ["alice"]


async def test_presence_news_reaches_every_node_in_order(
    node: NodeFactory, peer: PeerMaker
) -> None:
    a, b = await node("A"), await node("B")
    alice = await peer("alice", a)
    news: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
    alice.on_presence = lambda user, online: news.put_nowait((user, online))
    bob = await peer("bob", b)
    assert await asyncio.wait_for(news.get(), 5) == ("bob", True)
    await bob.close()
    assert await asyncio.wait_for(news.get(), 5) == ("bob", False)
    bob = await peer("bob", a, identity=bob.identity)  # back, on alice's node this time
    assert await asyncio.wait_for(news.get(), 5) == ("bob", True)
    assert await alice.online() == ["alice", "bob"]


async def test_the_relay_is_held_by_one_node_and_both_join_it_there(
    node: NodeFactory, peer: PeerMaker
) -> None:
    a, b = await node("A"), await node("B")
    alice = await peer("alice", a, advertise=UNREACHABLE, traversal=False)  # not reachable
    bob = await peer("bob", b)
    chat_a, chat_b = await connect(alice, bob)
    assert chat_a.route == chat_b.route == "relay"
    await chat_a.send("relayed across nodes")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "relayed across nodes"
    await chat_b.send("and back")
    assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "and back"
    # The invitee's node holds it; the inviter was sent there by the ticket.
    assert (a.relays.active, b.relays.active) == (0, 1)
    assert b.relays.bytes_relayed > 0
    assert a.relays.bytes_relayed == 0


async def test_invitation_bounds_are_counted_across_nodes(
    node: NodeFactory, peer: PeerMaker
) -> None:
    a, b, c = [await node(n, max_invitations=1) for n in ("A", "B", "C")]
    carol, victim, dave = await peer("carol", a), await peer("victim", b), await peer("dave", c)
    first = asyncio.create_task(carol.invite("victim", timeout=30))
    invitation = await asyncio.wait_for(victim.next_invitation(), 5)
    # victim may have one invitation waiting at most, whichever nodes they come through.
    with pytest.raises(p2pchat.TooManyInvitations, match="victim has 1 invitations pending"):
        await dave.invite("victim", timeout=5)
    await invitation.refuse("no")
    with pytest.raises(p2pchat.InviteRefused):
        await first
    second = asyncio.create_task(dave.invite("victim", timeout=30))  # answered: room again
    assert (await asyncio.wait_for(victim.next_invitation(), 5)).sender == "dave"
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)


async def test_mail_left_on_one_node_is_collected_on_another(
    node: NodeFactory, peer: PeerMaker
) -> None:
    a, b = await node("A"), await node("B")
    alice = await peer("alice", a)
    bob = await peer("bob", b)
    bob_identity = bob.identity
    await bob.close()
    await eventually(lambda: "bob" not in b.online_users)
    sent = await alice.send("bob", "left on node A")
    await eventually(lambda: a.mail.deposits == 1)
    bob = await peer("bob", b, identity=bob_identity)
    got = await asyncio.wait_for(bob.next_message(), 10)
    assert (got.id, got.body) == (sent.id, "left on node A")
    await eventually(lambda: _shipped(alice, sent.id), timeout=10)  # the receipt came back
    # Bob settles the item once the server has taken his receipt (either order loses
    # nothing), so alice may hold the receipt before the settle is done: wait for it.
    await eventually(lambda: _mailbox_empty(a, "bob"), timeout=10)


async def _mailbox_empty(node: p2pchat.SignallingServer, user: str) -> bool:
    return await node.mail.mailbox.usage(user) == (0, 0)


async def _shipped(peer: p2pchat.Peer, message_id: str) -> bool:
    return any(m.shipped for m in await peer.history("bob") if m.id == message_id)


async def test_garbage_in_redis_does_not_take_a_node_down(
    node: NodeFactory,
    peer: PeerMaker,
    redis_url: str,
    redis_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = await node("A"), await node("B")
    alice, bob = await peer("alice", a), await peer("bob", b)
    raw = RedisClient(redis_url, prefix=redis_prefix)
    await raw.start()
    try:
        for channel, garbage in [
            (raw.key("presence"), "{not json"),
            (raw.key("presence"), '{"node": "X", "user": "../../etc", "online": true}'),
            (raw.key("push", "A"), "alice\n{}"),
            (raw.key("push", "A"), "\xff\n\x00"),
        ]:
            await raw.call(raw.redis.publish(channel, garbage))
        await raw.call(raw.redis.hset(raw.key("session", "mallory"), "addresses", "[[["))
        await raw.call(raw.redis.zadd(raw.key("online"), {"mallory": 0}))
        with pytest.raises(p2pchat.UnknownUser):  # an unreadable session: as if offline
            await alice.invite("mallory", timeout=5)
        chat_a, chat_b = await connect(alice, bob)  # and everything else goes on
        await chat_a.send("still here")
        assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "still here"
        await eventually(lambda: caplog.text.count("bad presence news from Redis") >= 4)
        assert caplog.text.count("bad push from Redis") == 2  # node A's channel only
        assert await alice.online() == ["alice", "bob", "mallory"]  # listed, not reachable
    finally:
        await raw.close()


@pytest.mark.parametrize("persistent", [True, False], ids=["appendonly", "no-persistence"])
async def test_redis_restarted_mid_run(tmp_path: Path, persistent: bool) -> None:
    """Redis killed (SIGKILL, by PID) and started again on the same port: the nodes answer
    ``unavailable`` meanwhile, then reconnect, register again the users they hold, and
    carry on. With appendonly (fsync always) the mail and the names' keys survive too."""
    require("redis-server", redis_available(), "install it (apt-get install redis-server)")
    redis = RedisServer(tmp_path / "redis", persistent=persistent)
    await redis.astart()
    try:
        quick: dict[str, Any] = {"heartbeat_interval": 0.2, "node_ttl": 1.0, "redis_timeout": 1.0}
        a = p2pchat.SignallingServer(
            port=0, redis=redis.url, node_id="A", metrics=("127.0.0.1", 0), **quick
        )
        b = p2pchat.SignallingServer(port=0, redis=redis.url, node_id="B", **quick)
        async with a, b:
            alice = p2pchat.Peer("alice", server=("127.0.0.1", a.port))
            bob = p2pchat.Peer("bob", server=("127.0.0.1", b.port))
            dave = p2pchat.Peer("dave", server=("127.0.0.1", b.port))
            async with alice, bob:
                async with dave:
                    pass  # dave is known, and away
                letter = await alice.send("dave", "kept across the restart")
                await eventually(lambda: a.mail.deposits == 1)

                await redis.kill()
                with pytest.raises(p2pchat.ServerUnavailable):
                    await alice.online()
                clusters = [n.cluster for n in (a, b) if isinstance(n.cluster, RedisCluster)]
                await eventually(lambda: all(c.failed_beats and not c.healthy for c in clusters))
                assert alice.state == bob.state == "connected"  # the peers see nothing
                assert await _health(a) == 503

                await redis.astart()  # the same port, the same directory
                await eventually(lambda: all(c.healthy and c.resyncs for c in clusters), timeout=15)
                assert await _health(a) == 200
                await eventually(lambda: _lists(alice, bob, ["alice", "bob"]), timeout=15)
                chat_a, chat_b = await connect(alice, bob)  # across nodes, as before
                await chat_a.send("after the restart")
                assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "after the restart"
                if persistent:
                    dave = p2pchat.Peer(
                        "dave", server=("127.0.0.1", b.port), identity=dave.identity
                    )
                    async with dave:
                        got = await asyncio.wait_for(dave.next_message(), 10)
                        assert (got.id, got.body) == (letter.id, "kept across the restart")
                    impostor = p2pchat.Peer("dave", server=("127.0.0.1", a.port))
                    with pytest.raises(p2pchat.AuthenticationError):  # the key is remembered
                        await impostor.start()
    finally:
        await redis.kill()


async def _health(server: p2pchat.SignallingServer) -> int:
    url = f"http://127.0.0.1:{server.metrics_port}/healthz"
    async with aiohttp.ClientSession() as http, http.get(url) as answer:
        return answer.status


async def _lists(alice: p2pchat.Peer, bob: p2pchat.Peer, names: list[str]) -> bool:
    try:
        return await alice.online() == names == await bob.online()
    except p2pchat.ServerUnavailable:
        return False


async def test_a_node_id_is_one_live_process(
    node: NodeFactory, redis_url: str, redis_prefix: str
) -> None:
    await node("A")
    twin = p2pchat.SignallingServer(
        port=0,
        redis=redis_url,
        redis_prefix=redis_prefix,
        node_id="A",
        heartbeat_interval=0.2,
        node_ttl=1.0,
    )
    with pytest.raises(p2pchat.StoreError, match="node id A is in use by a live node"):
        await twin.start()
