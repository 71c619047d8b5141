"""Files sent between peers: offered as messages, the bytes over the conversation,
windowed and acknowledged, checked by SHA-256, put in place under a name that replaces
nothing; refused, cancelled or broken transfers end with a clear error and no file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

import p2pchat

from .conftest import PeerFactory, connect, eventually


def random_file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


async def test_a_file_goes_direct_and_arrives_whole(make_peer: PeerFactory, tmp_path: Path) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    await connect(alice, bob)
    source = random_file(tmp_path / "out" / "photo.jpg", 3 * 1024 * 1024 + 17)
    sending = await alice.send_file("bob", source)
    assert (sending.name, sending.size, sending.state) == (
        "photo.jpg",
        source.stat().st_size,
        "offered",
    )
    offer = await asyncio.wait_for(bob.next_file(), 5)
    assert (offer.sender, offer.name, offer.size) == ("alice", "photo.jpg", source.stat().st_size)
    assert offer.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    receiving = await offer.accept(tmp_path / "in")
    assert receiving.id == sending.id == offer.id
    path = await asyncio.wait_for(receiving.wait(), 10)
    assert path == tmp_path / "in" / "photo.jpg"
    assert path.read_bytes() == source.read_bytes()
    assert await asyncio.wait_for(sending.wait(), 5) is None
    assert sending.state == receiving.state == "done"
    assert sending.done == receiving.done == source.stat().st_size
    assert sorted(os.listdir(tmp_path / "in")) == ["photo.jpg"]  # no .part left
    assert [t.id for t in await alice.transfers()] == [sending.id]
    assert [t.id for t in await bob.transfers()] == [sending.id]


async def test_chat_is_not_starved_by_a_transfer(make_peer: PeerFactory, tmp_path: Path) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    chat_a, chat_b = await connect(alice, bob)
    source = random_file(tmp_path / "big.bin", 48 * 1024 * 1024)
    sending = await alice.send_file("bob", source)
    receiving = await (await asyncio.wait_for(bob.next_file(), 5)).accept(tmp_path / "in")
    await eventually(lambda: receiving.done > 0)
    delays = []
    for n in range(5):
        if sending.state == "done":
            break
        began = time.monotonic()
        await chat_a.send(f"during {n}")
        await chat_a.wait_acknowledged()
        delays.append(time.monotonic() - began)
        assert (await asyncio.wait_for(chat_b.receive(), 5)).body == f"during {n}"
    assert delays, "the transfer ended before a message could go beside it"
    assert sending.state != "done" or len(delays) > 1
    assert max(delays) < 0.1, delays
    await asyncio.wait_for(receiving.wait(), 60)


async def test_an_offer_by_mail_is_accepted_and_goes_at_the_next_talk(
    make_peer: PeerFactory, tmp_path: Path
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    source = random_file(tmp_path / "notes.txt", 200_000)
    sending = await alice.send_file("bob", source)  # no talk open: sealed to bob's mailbox
    offer = await asyncio.wait_for(bob.next_file(), 5)
    assert (offer.sender, offer.name) == ("alice", "notes.txt")
    receiving = await offer.accept(tmp_path / "in")
    assert receiving.state == "accepted"
    assert receiving.done == 0
    await connect(bob, alice)
    path = await asyncio.wait_for(receiving.wait(), 10)
    assert path is not None
    assert path.read_bytes() == source.read_bytes()
    await asyncio.wait_for(sending.wait(), 5)


async def test_transfers_are_listed_after_a_restart(make_peer: PeerFactory, tmp_path: Path) -> None:
    alice = await make_peer("alice", store=p2pchat.SqliteMessageStore(tmp_path / "a.sqlite3"))
    bob = await make_peer("bob")
    await connect(alice, bob)
    sent = await alice.send_file("bob", random_file(tmp_path / "a.bin", 1000))
    await (await asyncio.wait_for(bob.next_file(), 5)).accept(tmp_path / "in")
    await asyncio.wait_for(sent.wait(), 5)
    unanswered = await alice.send_file("bob", random_file(tmp_path / "b.bin", 1000))
    await alice.close()
    store = p2pchat.SqliteMessageStore(tmp_path / "a.sqlite3")
    again = p2pchat.Peer("alice", server=alice.servers, store=store)
    async with again:
        listed = {t.id: t for t in await again.transfers()}
        assert listed[sent.id].state == "done"
        assert listed[sent.id].done == 1000
        assert listed[unanswered.id].state in ("offered", "accepted")


async def test_a_refusal_reaches_the_sender(make_peer: PeerFactory, tmp_path: Path) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    await connect(alice, bob)
    sending = await alice.send_file("bob", random_file(tmp_path / "x.bin", 1000))
    await (await asyncio.wait_for(bob.next_file(), 5)).refuse("no thanks")
    with pytest.raises(p2pchat.FileRefused, match="no thanks"):
        await asyncio.wait_for(sending.wait(), 5)
    assert sending.state == "refused"


@pytest.mark.parametrize("who", ["sender", "recipient"])
async def test_a_cancel_ends_both_sides_and_leaves_no_file(
    make_peer: PeerFactory, tmp_path: Path, who: str
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob", file_window=64 * 1024)  # slow: a sync each 16 KiB
    await connect(alice, bob)
    sending = await alice.send_file("bob", random_file(tmp_path / "x.bin", 64 * 1024 * 1024))
    receiving = await (await asyncio.wait_for(bob.next_file(), 5)).accept(tmp_path / "in")
    await eventually(lambda: receiving.done > 0)
    await (sending if who == "sender" else receiving).cancel("changed my mind")
    for transfer in (sending, receiving):
        with pytest.raises(p2pchat.TransferCancelled, match="changed my mind"):
            await asyncio.wait_for(transfer.wait(), 5)
    await eventually(lambda: not os.listdir(tmp_path / "in"))


async def test_over_max_file_size_is_refused(make_peer: PeerFactory, tmp_path: Path) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob", max_file_size=1000)
    await connect(alice, bob)
    sending = await alice.send_file("bob", random_file(tmp_path / "x.bin", 1001))
    offer = await asyncio.wait_for(bob.next_file(), 5)
    with pytest.raises(p2pchat.FileTooLarge, match="max_file_size"):
        await offer.accept(tmp_path / "in")
    with pytest.raises(p2pchat.FileTooLarge):
        await asyncio.wait_for(sending.wait(), 5)
    assert not (tmp_path / "in").exists() or not os.listdir(tmp_path / "in")


async def test_a_file_changed_after_its_offer_fails_its_hash(
    make_peer: PeerFactory, tmp_path: Path
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    await connect(alice, bob)
    source = random_file(tmp_path / "x.bin", 300_000)
    sending = await alice.send_file("bob", source)
    source.write_bytes(os.urandom(300_000))  # same size, other bytes
    receiving = await (await asyncio.wait_for(bob.next_file(), 5)).accept(tmp_path / "in")
    for transfer in (receiving, sending):
        with pytest.raises(p2pchat.HashMismatch):
            await asyncio.wait_for(transfer.wait(), 5)
    assert os.listdir(tmp_path / "in") == []


async def test_an_existing_file_is_never_replaced(make_peer: PeerFactory, tmp_path: Path) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    await connect(alice, bob)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("mine")
    source = random_file(tmp_path / "a.txt", 5000)
    await alice.send_file("bob", source)
    receiving = await (await asyncio.wait_for(bob.next_file(), 5)).accept(tmp_path / "in")
    path = await asyncio.wait_for(receiving.wait(), 5)
    assert path == tmp_path / "in" / "a (1).txt"
    assert path.read_bytes() == source.read_bytes()
    assert (tmp_path / "in" / "a.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["..", ".hidden", "CON", "nul.txt", "a\x1b[2Jb", "trail. ", "a:b"])
async def test_the_sender_cannot_offer_an_unsafe_name(
    make_peer: PeerFactory, tmp_path: Path, name: str
) -> None:
    alice = await make_peer("alice")
    await make_peer("bob")
    with pytest.raises(p2pchat.UnsafeFileName):
        await alice.send_file("bob", tmp_path / name)


async def test_a_file_goes_through_the_relay_when_no_direct_path(
    make_peer: PeerFactory, tmp_path: Path
) -> None:
    unreachable = [("127.0.0.1", 1)]  # advertised, nobody listens: the relay joins them
    alice = await make_peer("alice", advertise=unreachable, traversal=False)
    bob = await make_peer("bob")
    chat_a, _ = await connect(alice, bob)
    assert chat_a.route == "relay"
    source = random_file(tmp_path / "relayed.bin", 300_000)
    sending = await alice.send_file("bob", source)
    receiving = await (await asyncio.wait_for(bob.next_file(), 5)).accept(tmp_path / "in")
    path = await asyncio.wait_for(receiving.wait(), 15)
    assert path is not None
    assert path.read_bytes() == source.read_bytes()
    await asyncio.wait_for(sending.wait(), 5)
