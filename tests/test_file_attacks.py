"""A hostile sender, driven by hand on a real connection: a file name that is a path or a
trick, more bytes than offered, bytes that do not hash to the offer, bytes out of order.
Each fails that transfer alone, with a clear error, nothing written outside the chosen
directory and no file left in place; the conversation goes on. And a disk that fills
up mid-transfer (a small tmpfs): a clear error, no complete-looking file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import msgspec
import pytest

import p2pchat
from p2pchat.peering.files import FileNote, offer_body
from p2pchat.protocol import FileAccept, FileData, FileStop, Msg

from .conftest import PeerFactory, RawClient, connect, hand_driven_invitee, require

RawFactory = Callable[[int], Awaitable[RawClient]]


def offer(name: str, data: bytes, *, size: int | None = None) -> Msg:
    """A file offer as a hostile client writes it (the name unchecked)."""
    note = msgspec.structs.replace(
        FileNote(id=str(uuid.uuid4()), name="x", size=0, sha256="0" * 64),
        name=name,
        size=len(data) if size is None else size,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return Msg(id=note.id, ts=time.time(), body=offer_body(note))


def everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "name",
    [
        "../escape.txt",
        "/etc/passwd",
        "..",
        "sub/dir.txt",
        "a\\b.txt",
        ".bashrc",
        "COM1.txt",
        "bad\x00name",
        "bell\x07.txt",
        "rtl\u202etxt.exe",
        "x" * 300,
    ],
)
async def test_a_hostile_name_is_refused_and_nothing_is_written(
    server: p2pchat.SignallingServer,
    make_peer: PeerFactory,
    raw_clients: RawFactory,
    tmp_path: Path,
    name: str,
) -> None:
    bob = await make_peer("bob")
    chat, mallory = await hand_driven_invitee(bob, "mallory", server.port, raw_clients)
    before = everything_under(tmp_path)
    hostile = offer(name, b"payload")
    await mallory.send(hostile)
    stop = await mallory.recv_until(FileStop)
    assert stop.id == hostile.id
    assert stop.code == "unsafe_name"
    # The talk goes on, and bob's application never saw the offer as a message.
    await mallory.send(Msg(id="after", ts=time.time(), body="still here"))
    assert (await asyncio.wait_for(chat.receive(), 5)).body == "still here"
    (transfer,) = await bob.transfers()
    assert transfer.state == "refused"
    assert isinstance(transfer.error, p2pchat.UnsafeFileName)
    assert everything_under(tmp_path) == before


async def accepted(
    bob: p2pchat.Peer, mallory: RawClient, hostile: Msg, directory: Path
) -> tuple[p2pchat.Transfer, FileAccept]:
    await mallory.send(hostile)
    transfer = await (await asyncio.wait_for(bob.next_file(), 5)).accept(directory)
    ask = await mallory.recv_until(FileAccept)
    assert (ask.id, ask.offset) == (hostile.id, 0)
    return transfer, ask


@pytest.mark.parametrize("how", ["more bytes than offered", "other bytes", "out of order"])
async def test_bytes_that_break_the_offer_fail_the_transfer_and_leave_no_file(
    server: p2pchat.SignallingServer,
    make_peer: PeerFactory,
    raw_clients: RawFactory,
    tmp_path: Path,
    how: str,
) -> None:
    bob = await make_peer("bob")
    chat, mallory = await hand_driven_invitee(bob, "mallory", server.port, raw_clients)
    data = os.urandom(1000)
    hostile = offer("data.bin", data)
    transfer, _ = await accepted(bob, mallory, hostile, tmp_path / "in")
    if how == "more bytes than offered":
        frames = [FileData(id=hostile.id, offset=0, data=data + b"more")]
        expected: type[p2pchat.TransferError] = p2pchat.SizeMismatch
    elif how == "other bytes":
        frames = [FileData(id=hostile.id, offset=0, data=os.urandom(1000))]
        expected = p2pchat.HashMismatch
    else:
        frames = [FileData(id=hostile.id, offset=500, data=data[500:])]
        expected = p2pchat.TransferFailed
    for frame in frames:
        await mallory.send(frame)
    with pytest.raises(expected):
        await asyncio.wait_for(transfer.wait(), 5)
    stop = await mallory.recv_until(FileStop)
    assert stop.code == expected.code
    assert os.listdir(tmp_path / "in") == []
    await mallory.send(Msg(id="after", ts=time.time(), body="still here"))
    assert (await asyncio.wait_for(chat.receive(), 5)).body == "still here"


def can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, mounted for this test and unmounted after it."""
    require("a tmpfs mount", can_mount(), "run the tests as root to mount a small tmpfs")
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    require("a tmpfs mount", mounted.returncode == 0, mounted.stderr.decode(errors="replace"))
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


async def test_a_disk_that_fills_up_fails_the_transfer_and_leaves_no_file(
    make_peer: PeerFactory, tmp_path: Path, small_disk: Path
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob", file_window=64 * 1024)
    await connect(alice, bob)
    source = tmp_path / "three.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024))
    sending = await alice.send_file("bob", source)
    transfer = await (await asyncio.wait_for(bob.next_file(), 5)).accept(small_disk)
    # Room enough when accepted; then something else takes 2 MiB of the 4.
    (small_disk / "filler").write_bytes(b"\0" * 2 * 1024 * 1024)
    with pytest.raises(p2pchat.TransferFailed, match="disk full"):
        await asyncio.wait_for(transfer.wait(), 10)
    with pytest.raises(p2pchat.TransferFailed, match="disk full"):
        await asyncio.wait_for(sending.wait(), 5)
    assert sorted(os.listdir(small_disk)) == ["filler"]  # no .part, no file


async def test_a_file_over_the_free_space_is_refused_before_a_byte_is_sent(
    make_peer: PeerFactory, tmp_path: Path, small_disk: Path
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    await connect(alice, bob)
    source = tmp_path / "five.bin"
    source.write_bytes(os.urandom(5 * 1024 * 1024))
    sending = await alice.send_file("bob", source)
    offer_ = await asyncio.wait_for(bob.next_file(), 5)
    with pytest.raises(p2pchat.FileTooLarge, match="free"):
        await offer_.accept(small_disk)
    with pytest.raises(p2pchat.FileTooLarge):
        await asyncio.wait_for(sending.wait(), 5)
    assert sending.sent == 0
    assert os.listdir(small_disk) == []
