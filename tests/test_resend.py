"""Acknowledgements after a resend (issue 18, finding 14): whatever crashes, a message its
receiver has stored ends up shipped on the sender's side, within the talk that carries it.

Two races, each made to happen on purpose, then the scenario they were found in: 2,000
sends at once, the receiver SIGKILLed early, restarted, and invited again.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from msgspec.structs import replace

import p2pchat
from p2pchat.messages import MAX_ACK_IDS
from p2pchat.store import Message

from .conftest import GatedMessageStore, Launch, PeerFactory, connect, eventually
from .test_faults import _all_shipped, fast_peer, keep_talking, shown, start_server, worker


class HeldStore(p2pchat.MemoryMessageStore):
    """A disk that holds every write until ``gate`` opens, counting what waits."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.held: list[int] = []  # sizes of the writes waiting

    async def add_many(self, messages: Sequence[Message], *, unread: bool = False) -> list[Message]:
        self.held.append(len(messages))
        await self.gate.wait()
        return await super().add_many(messages, unread=unread)


def unshipped(store: p2pchat.MemoryMessageStore) -> int:
    return sum(not m.shipped for m in store._messages.values())


async def test_acks_piled_up_behind_a_slow_disk_all_reach_the_sender(
    make_peer: PeerFactory,
) -> None:
    """Several received batches stored at once were acknowledged in one ack, over the
    frame limit: the receiver's talk ended and the sender kept them unshipped."""
    sent_store, held = p2pchat.MemoryMessageStore(), HeldStore()
    alice = await make_peer("alice", store=sent_store)
    bob = await make_peer("bob", store=held)
    count = 3000
    for n in range(count):  # the longest ids: the fewest fit in one frame
        await sent_store.add(replace(Message.new("alice", "bob", f"m{n}"), id=f"{n:064d}"))
    # Left in the mailbox already, as far as alice knows: they go by the talk alone (else
    # her login, before the talk, would send the first hundreds by mail, a batch a letter).
    await sent_store.mark_deposited(f"{n:064d}" for n in range(count))
    chat_a, chat_b = await connect(alice, bob)
    await eventually(lambda: len(held.held) >= 4, timeout=10)  # the writes in flight
    assert sum(held.held) > 65536 // 67  # acked at once, they would not fit one frame
    held.gate.set()
    received = [message async for message in _first(chat_b, count)]  # bob reads them all
    assert len({m.id for m in received}) == count
    await eventually(lambda: unshipped(sent_store) == 0, timeout=20)
    assert not chat_a.closed
    assert not chat_b.closed
    assert MAX_ACK_IDS * 67 < 65536


async def _first(chat: p2pchat.Conversation, count: int) -> AsyncIterator[Message]:
    for _ in range(count):
        yield await asyncio.wait_for(chat.receive(), 10)


async def test_what_an_ended_talk_stores_after_the_next_read_its_backlog_is_sent(
    make_peer: PeerFactory,
) -> None:
    """A send stored by the old talk after the new one read its backlog went nowhere:
    neither in the new talk (not in its backlog) nor by mail (a talk is open)."""
    store = GatedMessageStore("add_many")
    alice = await make_peer("alice", store=store)
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    sending = asyncio.create_task(alice.send("bob", "stored late"))
    await asyncio.wait_for(store.entered.wait(), 5)  # being stored by the first talk...
    await chat_b.close()
    await asyncio.wait_for(chat_a.wait_closed(), 5)  # ...which ends meanwhile
    chat_a2, chat_b2 = await connect(alice, bob)
    await eventually(lambda: chat_a2._delivery._resumed)  # its backlog is read: empty
    store.gate.set()  # only now is the message written
    sent = await asyncio.wait_for(sending, 5)
    got = await asyncio.wait_for(chat_b2.receive(), 5)
    assert (got.id, got.body) == (sent.id, "stored late")
    await asyncio.wait_for(chat_a2.wait_acknowledged(), 5)
    assert [m.shipped for m in await alice.history("bob")] == [True]
    assert not chat_a2.closed


async def test_a_receiver_killed_early_in_a_burst_ends_with_everything_shipped(
    launch: Launch, tmp_path: Path
) -> None:
    """2,000 sends at once; bob SIGKILLed once he shows the first few; restarted and
    invited again: everything he stores comes back shipped in that talk."""
    _, port = await start_server(launch, tmp_path / "server.sqlite3")
    count = 2000
    bob = await worker(launch, "receiver", "bob", "alice", port, tmp_path)
    alice = fast_peer("alice", port, store=p2pchat.SqliteMessageStore(tmp_path / "alice.sqlite3"))
    stop = asyncio.Event()
    bodies = [f"m{n:04d}" for n in range(count)]
    async with alice:
        talking = asyncio.create_task(keep_talking(alice, "bob", stop))
        await eventually(lambda: "bob" in alice.conversations, timeout=10)
        sending = asyncio.ensure_future(asyncio.gather(*(alice.send("bob", b) for b in bodies)))
        await shown(bob, 1)
        bob.process.send_signal(signal.SIGKILL)
        await bob.process.wait()
        bob = await worker(launch, "receiver", "bob", "alice", port, tmp_path)
        sent = await asyncio.wait_for(sending, 60)
        assert sorted(m.body for m in sent) == bodies
        await eventually(lambda: _all_shipped(alice), timeout=60)
        stop.set()
        await talking


async def test_the_server_killed_mid_deposit_leaves_every_stored_message_shipped(
    launch: Launch, tmp_path: Path
) -> None:
    """The server SIGKILLed while alice's mail to bob (away) is being deposited, then
    started again: bob gets each once, in order, and alice learns of every one (by
    receipt, with no talk)."""
    db = tmp_path / "server.sqlite3"
    server, port = await start_server(launch, db)
    bodies = [f"m{n:04d}" for n in range(150)]  # beyond the burst of deposits: paced

    def peer(name: str) -> p2pchat.Peer:
        return fast_peer(name, port, store=p2pchat.SqliteMessageStore(tmp_path / f"{name}.db"))

    async with peer("bob"):
        pass  # bob is known, and away
    async with peer("alice") as alice:
        for body in bodies:
            await alice.send("bob", body)

        async def deposited(at_least: int) -> bool:
            return len(bodies) - len(await alice.store.undeposited("alice")) >= at_least

        await eventually(lambda: deposited(110), timeout=30)  # paced now: mid-deposit
        server.process.send_signal(signal.SIGKILL)
        await server.process.wait()
        await start_server(launch, db, port)
        async with peer("bob") as bob:
            got = [(await asyncio.wait_for(bob.next_message(), 30)).body for _ in bodies]
            assert got == bodies
            await eventually(lambda: _all_shipped(alice), timeout=30)
            assert "bob" not in alice.conversations
        assert [m.body for m in await alice.history("bob")] == bodies
