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
