"""Regressions for the races a review of the multi-node server found: a logout and a
login of the same name crossing on one node, a logout during a resync, logins before the
node has joined, a heartbeat stuck behind clean-up work, a relay address nobody can
reach, pub/sub lost while Redis stays up, two processes with one node id, and a close
that waited for ever on a heartbeat cancelled as it wrote.

Each failed before its fix. Where a race needs a window, one call is made to wait at a
gate the test opens (as a slow Redis round trip would); everything else is real: a real
redis-server, real sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import p2pchat
from p2pchat.cluster.redis_client import RedisClient
from p2pchat.cluster.redis_cluster import RedisCluster
from p2pchat.cluster.redis_heartbeat import Heartbeat
from p2pchat.frontends.demo import command

from .conftest import (
    Launch,
    NodeFactory,
    PeerMaker,
    closed_in_time,
    connect,
    eventually,
    in_time,
)
from .redisserver import answers


class Gate:
    """Makes ``owner.method`` wait at a gate the test opens: ``entered`` is set when a
    call has started; calls after ``opened()`` go straight through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, method: str) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        real = getattr(owner, method)

        async def gated(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            await self.open.wait()
            return await real(*args, **kwargs)

        monkeypatch.setattr(owner, method, gated)


def redis_cluster(server: p2pchat.SignallingServer) -> RedisCluster:
    assert isinstance(server.cluster, RedisCluster)
    return server.cluster


def presence_of(watcher: p2pchat.Peer) -> dict[str, bool]:
    """What ``watcher`` last heard of each user's presence (updated as news comes)."""
    seen: dict[str, bool] = {}
    watcher.on_presence = lambda user, online: seen.__setitem__(user, online)
    return seen


async def node_of(server: p2pchat.SignallingServer, name: str) -> str | None:
    """The node holding ``name``, as the directory says (None: logged out)."""
    entry = await server.cluster.lookup(name)
    return None if entry is None else entry.node


# 2. A login again on the same node, wiped by the old session's logout.


async def test_a_login_again_on_the_same_node_survives_the_old_sessions_logout(
    node: NodeFactory, peer: PeerMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await node("A"), await node("B")
    alice, bob = await peer("alice", a), await peer("bob", b)
    heard = presence_of(bob)
    gate = Gate(monkeypatch, a.rendezvous.book, "of_user")  # the old logout's clean-up
    await alice.close()
    await gate.entered.wait()  # the old session is gone here; its logout is under way
    alice2 = await peer("alice", a, identity=alice.identity)
    inviting = asyncio.create_task(bob.invite("alice", timeout=10))
    invitation = await asyncio.wait_for(alice2.next_invitation(), 5)
    gate.open.set()
    await eventually(lambda: a.connection_count == 1)  # the old logout has ended
    assert await node_of(b, "alice") == "A"
    assert await bob.online() == ["alice", "bob"]
    await eventually(lambda: heard.get("alice") is True)
    chat_b, chat_a = await connect_accepted(inviting, invitation)  # not settled by it
    await chat_b.send("still you?")
    assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "still you?"


async def connect_accepted(
    inviting: asyncio.Task[p2pchat.Conversation], invitation: p2pchat.Invitation
) -> tuple[p2pchat.Conversation, p2pchat.Conversation]:
    accepted = await invitation.accept()
    return await inviting, accepted


async def test_alone_a_login_again_is_let_in_while_the_old_session_logs_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with p2pchat.SignallingServer(port=0) as server:
        at = ("127.0.0.1", server.port)
        alice, bob = p2pchat.Peer("alice", server=at), p2pchat.Peer("bob", server=at)
        async with bob:
            await alice.start()
            heard = presence_of(bob)
            gate = Gate(monkeypatch, server.rendezvous.book, "of_user")
            await alice.close()
            await gate.entered.wait()
            alice2 = p2pchat.Peer("alice", server=at, identity=alice.identity)
            async with alice2:  # refused with name_taken before
                gate.open.set()
                await eventually(lambda: server.connection_count == 2)
                assert server.online_users == ["alice", "bob"]
                assert await bob.online() == ["alice", "bob"]
                await eventually(lambda: heard.get("alice") is True)
                chat_b, chat_a = await connect(bob, alice2)
                await chat_a.send("back")
                assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "back"


# 1. A logout during a resync left a ghost that every node refused forever.


class GatedScripts:
    """Makes one Lua script of a node's Redis client wait at a gate the test opens, as a
    slow round trip would (every other call goes straight through)."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, server: p2pchat.SignallingServer, script: str
    ):
        assert server.redis is not None
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        real = server.redis.run

        async def run(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == script:
                self.entered.set()
                await self.open.wait()
            return await real(name, *args, **kwargs)

        monkeypatch.setattr(server.redis, "run", run)


async def test_a_logout_during_a_resync_leaves_no_ghost(
    node: NodeFactory, peer: PeerMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await node("A")
    alice = await peer("alice", a)
    assert a.redis is not None
    gate = GatedScripts(monkeypatch, a, "claim")
    # Redis forgets node A (as after a restart): its next heartbeat finds out, and it
    # registers again the users it holds, alice among them.
    await a.redis.call(a.redis.redis.delete(a.redis.key("node", "A")))
    await gate.entered.wait()
    await alice.close()  # while her registration is under way
    await eventually(lambda: a.connection_count == 0)  # her logout is done
    gate.open.set()
    await eventually(lambda: redis_cluster(a).resyncs >= 1)
    assert await node_of(a, "alice") is None
    b = await node("B")
    again = await peer("alice", b, identity=alice.identity)  # refused as logged in before
    assert await again.online() == ["alice"]
    assert b.online_users == ["alice"]


# 3. A node let users in before it had joined the cluster, then erased them.


async def test_a_node_lets_nobody_in_before_it_has_joined(
    redis_url: str, redis_prefix: str, peer: PeerMaker
) -> None:
    raw = RedisClient(redis_url, prefix=redis_prefix)
    await raw.start()
    # Node A was SIGKILLed a moment ago: its heartbeat lives a little longer, and A,
    # started again at once, waits for it to expire before it joins.
    await raw.call(raw.redis.set(raw.key("node", "A"), "crashed", px=1500))
    await raw.call(raw.redis.sadd(raw.key("nodes"), "A"))
    # The port is held (bound, not listening; SO_REUSEADDR, as the server's own socket)
    # while A waits to join, so no other socket takes it in the meantime.
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    port = int(holder.getsockname()[1])
    a = p2pchat.SignallingServer(
        port=port,
        redis=redis_url,
        redis_prefix=redis_prefix,
        node_id="A",
        heartbeat_interval=0.2,
        node_ttl=2.0,
    )
    starting = asyncio.create_task(a.start())
    try:
        await eventually(lambda: answers(port))
        alice = p2pchat.Peer("alice", server=("127.0.0.1", port))
        async with alice:
            await starting
            assert await node_of(a, "alice") == "A"  # erased by the join before
            assert await alice.online() == ["alice"]
    finally:
        holder.close()
        await starting
        await a.close()
        await raw.close()


# 5. Relays across nodes broke silently on a wildcard address with no advertise.


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_a_node_on_a_wildcard_address_must_say_where_it_is_reached(
    redis_url: str, host: str
) -> None:
    with pytest.raises(ValueError, match=r"--advertise HOST:PORT \(advertise="):
        p2pchat.SignallingServer(host=host, port=0, redis=redis_url)
    alone = p2pchat.SignallingServer(host=host, port=0)  # alone, relays are where peers are
    reached = p2pchat.SignallingServer(host=host, port=0, redis=redis_url, advertise=("a", 1))
    assert alone.advertise is None
    assert reached.advertise == ("a", 1)


async def test_p2pchat_server_on_a_wildcard_address_without_advertise_exits(
    launch: Launch, redis_url: str, redis_prefix: str
) -> None:
    server = await launch(
        "node",
        [
            "env",
            f"P2PCHAT_REDIS={redis_url}",
            *command("p2pchat-server"),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--redis-prefix",
            redis_prefix,
        ],
    )
    await server.expect(r"p2pchat-server: .*0\.0\.0\.0.*--advertise HOST:PORT")
    assert await server.finish() == 1


# 8. Two processes with the same node id could both run.


async def test_two_processes_with_one_node_id_started_at_once_one_runs(
    redis_url: str, redis_prefix: str
) -> None:
    """Both reach their join at once (a barrier): one runs, the other is refused. One that
    fails before its join breaks the barrier, so that its twin fails too, at once, rather
    than wait there for ever; and starting or closing them is bounded, showing every task
    if it takes too long."""
    twins = [
        p2pchat.SignallingServer(
            port=0,
            redis=redis_url,
            redis_prefix=redis_prefix,
            node_id="A",
            heartbeat_interval=0.2,
            node_ttl=1.0,
        )
        for _ in range(2)
    ]
    both = asyncio.Barrier(2)
    for twin in twins:  # both get to their join at once
        join = twin.cluster.start

        async def together(join: Callable[[], Awaitable[None]] = join) -> None:
            await both.wait()
            await join()

        twin.cluster.start = together  # type: ignore[method-assign]

    async def start(twin: p2pchat.SignallingServer) -> None:
        try:
            await twin.start()
        except BaseException:
            await both.abort()  # a twin still to reach the barrier, or waiting there, fails
            raise

    try:
        started = await in_time(
            asyncio.gather(*(start(twin) for twin in twins), return_exceptions=True),
            "starting the twins",
            20.0,
        )
        refused = [r for r in started if isinstance(r, BaseException)]
        assert len(refused) == 1, started
        assert isinstance(refused[0], p2pchat.StoreError)
        assert "node id A is in use by a live node" in str(refused[0])
    finally:
        for twin in twins:
            await closed_in_time(twin.close(), "a twin")


async def test_a_heartbeat_never_refreshes_another_processs_node_key(
    node: NodeFactory, peer: PeerMaker
) -> None:
    a = await node("A")
    assert a.redis is not None
    key = a.redis.key("node", "A")
    # Another process took the id while A was away (its key had expired).
    await a.redis.call(a.redis.redis.set(key, "another process", px=5000))
    await eventually(lambda: not a.cluster.healthy)  # /healthz says so
    assert await a.redis.call(a.redis.redis.get(key)) == "another process"
    with pytest.raises(p2pchat.ServerUnavailable):  # nor does it take names as node A
        await peer("alice", a)
    await a.redis.call(a.redis.redis.delete(key))  # gone: A takes its id again
    await eventually(lambda: a.cluster.healthy)
    assert await peer("bob", a)


# 9. A node's close waited for ever: its heartbeat, cancelled as a beat's write ended,
# beat on (Python 3.11's asyncio.wait_for, which redis-py writes through, lost that
# cancellation). The twins above hung so in CI, for 120 s.


async def test_a_heartbeat_closed_at_any_moment_stops_beating(
    redis_url: str, redis_prefix: str
) -> None:
    """A heartbeat beating back to back is closed one loop iteration later each time, over
    several beats: each close returns within seconds, and no beat follows it."""
    client = RedisClient(redis_url, prefix=redis_prefix)
    await client.start()
    try:
        for steps in range(40):
            heartbeat = Heartbeat(
                client, f"N{steps}", interval=0.0, ttl=5.0, on_trouble=lambda _: None
            )
            await heartbeat.take()
            before = asyncio.all_tasks()
            heartbeat.start()
            beating = asyncio.all_tasks() - before
            for _ in range(steps):
                await asyncio.sleep(0)  # one iteration of the loop further
            closing = asyncio.create_task(heartbeat.close())
            done, _ = await asyncio.wait({closing}, timeout=5.0)
            if not done:
                last = heartbeat.last_beat
                await asyncio.sleep(0.05)
                went_on = heartbeat.last_beat != last
                while not all(task.done() for task in beating):  # stopped for good
                    for task in beating:
                        task.cancel()
                    await asyncio.wait(beating, timeout=0.1)
                await closing
                pytest.fail(
                    f"closed {steps} loop iterations in, the heartbeat "
                    f"{'beat on' if went_on else 'did not end'}: close() waited 5 s for it"
                )
            last = heartbeat.last_beat
            await asyncio.sleep(0.01)
            assert heartbeat.last_beat == last  # no beat after its close
    finally:
        await client.close()


# 4. The heartbeat waited behind the clean-up after dead nodes.


async def leave_a_dead_node(raw: RedisClient, node_id: str, users: list[str]) -> None:
    """What a node SIGKILLed while holding ``users`` leaves in Redis (its heartbeat gone)."""
    pipe = raw.redis.pipeline(transaction=False)
    pipe.sadd(raw.key("nodes"), node_id)
    for name in users:
        pipe.hset(raw.key("session", name), mapping={"node": node_id, "addresses": "[]"})
        pipe.sadd(raw.key("node", node_id, "users"), name)
        pipe.zadd(raw.key("online"), {name: 0})
    await raw.call(pipe.execute())


class GatedSettlement:
    """Makes a server's settlement of what a dead node's user left wait at a gate (as
    many slow round trips would), except for the names in ``unless``."""

    def __init__(self, server: p2pchat.SignallingServer, *, unless: tuple[str, ...] = ()):
        self.open = asyncio.Event()
        self.waiting = 0
        self.most = 0  # settled at once, at most
        self.settled: collections.Counter[str] = collections.Counter()
        real = server.sessions.on_reaped
        assert real is not None

        async def gated(name: str) -> None:
            self.waiting += 1
            self.most = max(self.most, self.waiting)
            try:
                if name not in unless:
                    await self.open.wait()
                await real(name)
                self.settled[name] += 1
            finally:
                self.waiting -= 1

        server.sessions.on_reaped = gated


async def test_the_heartbeat_goes_on_while_a_dead_node_is_cleaned_up_after(
    node: NodeFactory, peer: PeerMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await node("A")
    assert a.redis is not None
    beats = collections.Counter[str]()
    run = a.redis.run

    async def counted(script: str, *args: Any, **kwargs: Any) -> Any:
        beats[script] += 1
        return await run(script, *args, **kwargs)

    monkeypatch.setattr(a.redis, "run", counted)
    settlement = GatedSettlement(a)
    await leave_a_dead_node(a.redis, "Z", [f"u{i}" for i in range(50)])
    await eventually(lambda: settlement.waiting > 0)  # A is cleaning up after Z
    since = beats["heartbeat"]
    # Beats go on, well past node_ttl (1 s: 5 beats), while the clean-up waits.
    await eventually(lambda: beats["heartbeat"] >= since + 8)
    assert a.cluster.healthy
    assert await a.redis.call(a.redis.redis.exists(a.redis.key("node", "A"))) == 1
    assert 0 < settlement.most <= 8  # a few at a time, not one connection each
    settlement.open.set()
    await eventually(lambda: len(settlement.settled) == 50)
    assert await peer("u1", a)  # and Z's users are free to come back


async def test_a_login_that_finds_its_node_dead_does_not_clean_up_all_it_left(
    node: NodeFactory, peer: PeerMaker
) -> None:
    # Beats and checks for dead nodes 3 s apart: the login finds Z dead first.
    a = await node("A", heartbeat_interval=3.0, node_ttl=10.0)
    assert a.redis is not None
    settlement = GatedSettlement(a, unless=("alice",))
    await leave_a_dead_node(a.redis, "Z", ["alice", *(f"u{i}" for i in range(50))])
    alice = await asyncio.wait_for(peer("alice", a), 2.0)  # waited for all 51 before
    assert settlement.settled["alice"] == 1  # hers before she is let in
    assert await alice.online() == ["alice"]  # Z's users are logged out at once
    settlement.open.set()
    await eventually(lambda: len(settlement.settled) == 51)
    assert settlement.settled["alice"] == 1  # and only once


# 7. Pub/sub lost while Redis stays up: presence news and pushes were lost for good.


class GatedResubscription:
    """Makes a node's next pub/sub subscription wait at a gate the test opens, as a slow
    reconnection would: ``entered`` is set once the node is trying to subscribe again."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, server: p2pchat.SignallingServer):
        assert server.redis is not None
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        real = server.redis.pubsub

        def pubsub() -> Any:
            made = real()
            subscribe = made.subscribe

            async def gated(*channels: str) -> Any:
                self.entered.set()
                await self.open.wait()
                return await subscribe(*channels)

            made.subscribe = gated  # type: ignore[method-assign,assignment]
            return made

        monkeypatch.setattr(server.redis, "pubsub", pubsub)


async def test_after_pub_sub_is_lost_a_node_catches_up_on_presence(
    node: NodeFactory, peer: PeerMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await node("A"), await node("B")
    alice, carol = await peer("alice", a), await peer("carol", b)
    heard = presence_of(alice)
    cluster = redis_cluster(a)
    gate = GatedResubscription(monkeypatch, a)
    assert a.redis is not None
    await a.redis.call(a.redis.redis.client_kill_filter(_type="pubsub"))  # Redis stays up
    await asyncio.wait_for(gate.entered.wait(), 5)  # A sees it lost pub/sub
    assert not a.cluster.healthy
    await carol.close()  # news node A cannot hear now
    dave = await peer("dave", b)
    await eventually(lambda: b.online_users == ["dave"])
    gate.open.set()
    await eventually(lambda: a.cluster.healthy)
    await eventually(lambda: heard == {"carol": False, "dave": True})  # lost for good before
    await eventually(lambda: cluster.resyncs >= 1)  # and what Redis holds is checked
    chat_d, chat_a = await connect(dave, alice)  # pushes reach node A again
    await chat_d.send("hello again")
    assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "hello again"


async def test_a_login_that_finds_its_node_dead_settles_its_own_invitations(
    node: NodeFactory, peer: PeerMaker
) -> None:
    """Alice's node died while she had invited bob and carol had invited her. Her login
    on A finds the dead node first (A's own check is seconds away): before she is let in,
    both invitations end and the other sides are told (they used to stand for
    ``invitation_ttl``, counted against both users)."""
    a = await node("A", heartbeat_interval=3.0, node_ttl=10.0)
    assert a.redis is not None
    await peer("bob", a)
    await peer("carol", a)
    book = a.rendezvous.book
    sent = await book.open("alice", "bob", ttl=120.0)
    received = await book.open("carol", "alice", ttl=120.0)
    await leave_a_dead_node(a.redis, "Z", ["alice"])
    await asyncio.wait_for(peer("alice", a), 5.0)
    assert await book.of_user("alice") == []  # settled before she was let in
    assert await book.get(sent.id) is None
    assert await book.get(received.id) is None
