"""Crashes, restarts and cut connections: nothing is lost, everything comes back."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import pytest

import p2pchat
from p2pchat.frontends.demo import ScriptedProcess, command

from .conftest import Launch, RecordingProxy, connect, eventually, let_the_loop_run


async def start_server(launch: Launch, db: Path, port: int = 0) -> tuple[ScriptedProcess, int]:
    server = await launch(
        "server", [*command("p2pchat-server"), "--port", str(port), "--db", str(db)]
    )
    found = int((await server.expect(r"listening on 127\.0\.0\.1:(\d+)")).group(1))
    return server, found


def fast_peer(name: str, port: int, **kwargs: object) -> p2pchat.Peer:
    return p2pchat.Peer(
        name,
        server=("127.0.0.1", port),
        reconnect_delay=(0.05, 0.5),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_server_killed_and_restarted_mid_chat(launch: Launch, tmp_path: Path) -> None:
    db = tmp_path / "server.sqlite3"
    server, port = await start_server(launch, db)
    alice, bob = fast_peer("alice", port), fast_peer("bob", port)
    states: list[str] = []
    async with alice, bob:
        alice.on_state = states.append
        chat_a, chat_b = await connect(alice, bob)
        await chat_a.send("before the crash")
        assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "before the crash"

        server.process.send_signal(signal.SIGKILL)
        await server.process.wait()
        await eventually(lambda: alice.state == bob.state == "reconnecting")
        # The direct conversation does not need the server.
        await chat_b.send("while the server is down")
        assert (await asyncio.wait_for(chat_a.receive(), 5)).body == "while the server is down"
        with pytest.raises(p2pchat.ConnectionClosed, match="reconnecting"):
            await alice.online()

        await start_server(launch, db, port)  # the same store, the same port
        await eventually(lambda: alice.state == bob.state == "connected", timeout=10)
        assert await alice.online() == ["alice", "bob"]
        assert states == ["reconnecting", "connected"]
        await chat_a.send("after the restart")
        assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "after the restart"
        # The restarted server still knows whose key each name is.
        with pytest.raises(p2pchat.AuthenticationError):
            await fast_peer("alice", port).start()


async def test_a_cut_network_is_noticed_and_the_peer_logs_in_again() -> None:
    async with p2pchat.SignallingServer(port=0, ping_interval=0.3, ping_timeout=0.3) as server:
        proxy = RecordingProxy(("127.0.0.1", server.port))
        where = await proxy.start()
        try:
            peer = p2pchat.Peer(
                "alice",
                server=where,
                ping_interval=0.3,
                ping_timeout=0.3,
                reconnect_delay=(0.05, 0.2),
            )
            async with peer:
                proxy.cut()  # no FIN, no RST: only silence, both ways
                # The peer notices by keepalive; the server drops the dead session by its
                # own keepalive, which frees the name for the new login.
                await eventually(lambda: peer.state == "reconnecting", timeout=5)
                await eventually(lambda: peer.state == "connected", timeout=10)
                assert await peer.online() == ["alice"]
                assert proxy.connections >= 2
        finally:
            await proxy.close()


WORKER = Path(__file__).with_name("chat_worker.py")
COUNT = 1000


async def worker(
    launch: Launch, role: str, name: str, contact: str, port: int, directory: Path
) -> ScriptedProcess:
    process = await launch(
        name,
        [sys.executable, str(WORKER), role, name, contact, str(port), str(directory), str(COUNT)],
    )
    await process.expect("ready")
    return process


async def stored(path: Path, user: str, contact: str) -> list[p2pchat.Message]:
    store = p2pchat.SqliteMessageStore(path)
    await store.start()
    try:
        return await store.history(user, contact)
    finally:
        await store.close()


def expected() -> list[str]:
    return [f"m{n:04d}" for n in range(COUNT)]


@pytest.mark.parametrize("victim", ["receiver", "sender"])
async def test_a_peer_killed_mid_stream_loses_nothing_and_repeats_nothing(
    launch: Launch, tmp_path: Path, victim: str
) -> None:
    _, port = await start_server(launch, tmp_path / "server.sqlite3")
    bob = await worker(launch, "receiver", "bob", "alice", port, tmp_path)
    alice = await worker(launch, "sender", "alice", "bob", port, tmp_path)
    await bob.expect(r"got m0300", timeout=30)  # mid-stream
    killed = bob if victim == "receiver" else alice
    killed.process.send_signal(signal.SIGKILL)
    await killed.process.wait()
    if victim == "receiver":
        bob = await worker(launch, "receiver", "bob", "alice", port, tmp_path)
    else:
        alice = await worker(launch, "sender", "alice", "bob", port, tmp_path)
    await alice.expect(r"^done$", timeout=60)
    # Both stores, read from disk: every message exactly once, in order, all shipped.
    received = await stored(tmp_path / "bob.sqlite3", "bob", "alice")
    assert [m.body for m in received] == expected()
    sent = await stored(tmp_path / "alice.sqlite3", "alice", "bob")
    assert [m.body for m in sent] == expected()
    assert all(m.shipped for m in sent)
    assert len({m.id for m in received}) == COUNT
    assert [m.id for m in received] == [m.id for m in sent]


async def keep_talking(peer: p2pchat.Peer, contact: str, stop: asyncio.Event) -> None:
    """Invite ``contact`` whenever no conversation is open, until ``stop``."""
    back = asyncio.Event()
    peer.on_presence = lambda user, online: back.set() if user == contact and online else None
    while not stop.is_set():
        back.clear()
        try:
            chat = await peer.invite(contact, timeout=5)
        except (p2pchat.UserOffline, p2pchat.InviteRefused, p2pchat.ConnectionClosed):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(back.wait(), 5)  # away: wait until it is back
            continue
        except p2pchat.InviteTimeout:
            continue
        closing = asyncio.create_task(chat.wait_closed())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({closing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        stopping.cancel()


@pytest.mark.parametrize("how", ["one by one", "all at once"])
async def test_every_send_is_stored_whatever_happens_to_the_receiver(
    launch: Launch, tmp_path: Path, how: str
) -> None:
    """peer.send() with the receiver SIGKILLed at several points, sends in flight: no
    send raises, every message is stored once, and all arrive once, after restarts."""
    _, port = await start_server(launch, tmp_path / "server.sqlite3")
    count = 600 if how == "one by one" else 2000
    # All at once, the sends are stored faster than bob shows the first of them: the
    # first kill comes at once, while most of them are still waiting for room.
    kill_at = [100, 300, 500] if how == "one by one" else [0, 900]
    bob = await worker(launch, "receiver", "bob", "alice", port, tmp_path)
    alice = fast_peer("alice", port, store=p2pchat.SqliteMessageStore(tmp_path / "alice.sqlite3"))
    stop = asyncio.Event()
    bodies = [f"m{n:04d}" for n in range(count)]
    acknowledged: set[str] = set()
    all_acknowledged = asyncio.Event()

    def on_shipped(contact: str, ids: list[str]) -> None:
        acknowledged.update(ids)
        if len(acknowledged) >= count:
            all_acknowledged.set()

    alice.on_shipped = on_shipped
    async with alice:
        talking = asyncio.create_task(keep_talking(alice, "bob", stop))
        await eventually(lambda: "bob" in alice.conversations, timeout=10)

        async def send_all() -> list[p2pchat.Message]:
            if how == "one by one":
                return [await alice.send("bob", body) for body in bodies]
            return list(await asyncio.gather(*(alice.send("bob", body) for body in bodies)))

        sending = asyncio.create_task(send_all())
        killed_in_flight = 0
        for point in kill_at:  # kill bob mid-stream, with sends in flight, and restart him
            if point == 0:
                await let_the_loop_run()
                killed_in_flight += not sending.done()
                bob.process.send_signal(signal.SIGKILL)
                await bob.process.wait()
                bob = await worker(launch, "receiver", "bob", "alice", port, tmp_path)
                continue
            reaching = asyncio.create_task(shown(bob, point))
            everything = asyncio.create_task(all_acknowledged.wait())
            await asyncio.wait({reaching, sending}, return_when=asyncio.FIRST_COMPLETED)
            if sending.done() and sending.exception() is not None:
                reaching.cancel()
                sending.result()  # a send raised: the test fails with its error
            # Under load bob may have had it all before the last kill landed: then a new
            # bob shows nothing more, and there is nothing left to kill him in the middle of.
            await asyncio.wait({reaching, everything}, return_when=asyncio.FIRST_COMPLETED)
            everything.cancel()
            if not reaching.done():
                reaching.cancel()
                break
            await reaching
            killed_in_flight += not sending.done()
            bob.process.send_signal(signal.SIGKILL)
            await bob.process.wait()
            bob = await worker(launch, "receiver", "bob", "alice", port, tmp_path)
        sent = await asyncio.wait_for(sending, 60)  # none raised
        assert killed_in_flight >= 1  # at least one kill came while sends were under way
        assert sorted(m.body for m in sent) == bodies
        mine = await alice.history("bob")
        assert sorted(m.body for m in mine) == bodies  # each stored once
        await eventually(lambda: _all_shipped(alice), timeout=60)
        stop.set()
        await talking
    received = await stored(tmp_path / "bob.sqlite3", "bob", "alice")
    assert sorted(m.body for m in received) == bodies  # each arrived once
    if how == "one by one":
        assert [m.body for m in received] == bodies  # and in order


async def shown(receiver: ScriptedProcess, number: int) -> None:
    """Wait until the receiver shows message ``number`` (or a later one)."""
    while int((await receiver.expect(r"got m(\d{4})", timeout=30)).group(1)) < number:
        pass


async def _all_shipped(peer: p2pchat.Peer) -> bool:
    return all(m.shipped for m in await peer.history("bob"))
