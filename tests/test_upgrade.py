"""A relayed talk moves onto a direct path once one exists (``peering/upgrade.py``): the
application keeps its conversation, every message sent across the switch arrives once, in
order, and a file under way goes on from the receiver's offset.

Here bob advertises an address where nobody listens and takes no part in reversal or
punching, so bob's invitation can reach alice only through the relay; alice (the name that
sorts first) then invites bob again in the background, and bob dials her: direct.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import p2pchat

from .conftest import PeerFactory, connect, eventually

UNREACHABLE = [("127.0.0.1", 1)]


async def relayed(
    make_peer: PeerFactory,
) -> tuple[p2pchat.Peer, p2pchat.Conversation, p2pchat.Peer, p2pchat.Conversation]:
    """alice and her conversation, bob and his, opened through the relay."""
    alice = await make_peer("alice")
    bob = await make_peer("bob", advertise=UNREACHABLE, traversal=False)
    chat_b, chat_a = await connect(bob, alice)
    assert chat_b.via == "relayed"
    return alice, chat_a, bob, chat_b


async def direct(peer: p2pchat.Peer, chat: p2pchat.Conversation) -> None:
    """Wait until ``chat`` is direct (``on_route`` says so, or it was already)."""
    changed = asyncio.Event()
    peer.on_route = lambda moved: changed.set() if moved is chat else None
    while chat.route != "direct":
        await asyncio.wait_for(changed.wait(), 15)
        changed.clear()


async def test_a_relayed_talk_moves_to_direct_and_each_message_arrives_once_in_order(
    make_peer: PeerFactory,
) -> None:
    alice, chat_a, bob, chat_b = await relayed(make_peer)
    switched = asyncio.ensure_future(asyncio.gather(direct(alice, chat_a), direct(bob, chat_b)))

    async def write(chat: p2pchat.Conversation, name: str) -> list[str]:
        sent: list[str] = []
        after = 0
        while after < 50:  # until both sides are direct, and 50 more
            after += switched.done()
            body = f"{name} {len(sent)}" + (" after" if switched.done() else "")
            await chat.send(body)
            sent.append(body)
            await asyncio.sleep(0.002)  # a steady stream: some are in flight at the switch
            assert len(sent) < 10_000, "the talk did not move in time"
        return sent

    async def read(chat: p2pchat.Conversation, got: list[str]) -> None:
        async for message in chat:
            got.append(message.body)

    got_a: list[str] = []
    got_b: list[str] = []
    readers = [asyncio.create_task(read(chat_a, got_a)), asyncio.create_task(read(chat_b, got_b))]
    sent_a, sent_b = await asyncio.gather(write(chat_a, "alice"), write(chat_b, "bob"))
    await switched
    await eventually(lambda: len(got_a) >= len(sent_b) and len(got_b) >= len(sent_a), timeout=15)
    assert got_b == sent_a  # each once, in order, across the switch
    assert got_a == sent_b
    assert any("after" not in s for s in sent_a)  # some went through the relay
    assert (chat_a.route, chat_b.route) == ("direct", "direct")
    assert chat_b.via == "dialled"
    assert not chat_a.closed
    assert not chat_b.closed
    for reader in readers:
        reader.cancel()


async def test_a_file_under_way_through_the_relay_goes_on_direct_from_its_offset(
    make_peer: PeerFactory, tmp_path: Path
) -> None:
    alice, chat_a, bob, chat_b = await relayed(make_peer)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 5))  # seconds at the relay's pace
    sending = await bob.send_file("alice", source)
    offer = await asyncio.wait_for(alice.next_file(), 5)
    receiving = await offer.accept(tmp_path / "in")
    await direct(alice, chat_a)
    assert receiving.done < receiving.size  # moved while the bytes were under way
    await direct(bob, chat_b)
    path = await asyncio.wait_for(receiving.wait(), 15)
    assert path is not None
    assert path.read_bytes() == source.read_bytes()
    await asyncio.wait_for(sending.wait(), 5)
    assert chat_a.route == "direct"
    assert not chat_a.closed


async def test_an_upgrade_with_a_key_that_is_not_the_remembered_one_is_refused(
    make_peer: PeerFactory, server: p2pchat.SignallingServer
) -> None:
    # Whoever can send rendezvous messages (the server) vouches a key for alice that bob
    # does not remember for her: bob refuses, by itself, and the talk stays relayed.
    _, chat_a, bob, chat_b = await relayed(make_peer)
    await bob.trust_key("alice", p2pchat.Identity.generate().key)  # before the first round
    invitations = server.stats.invitations
    await eventually(lambda: invitations["sent"] == 4, timeout=30)  # the talk's, three rounds
    assert invitations["accepted"] == 1  # only the talk's own
    assert bob.pending_invitations() == []  # the application was not asked
    assert (chat_a.route, chat_b.route) == ("relay", "relay")
    await chat_a.send("still here")
    assert (await asyncio.wait_for(chat_b.receive(), 5)).body == "still here"
