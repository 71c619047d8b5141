"""A file transfer survives either side being SIGKILLed at a random point, or its
connection dropped: it goes on at the next talk from the offset the recipient had stored
and synced, never from zero, and the file arrives whole, its SHA-256 checked, with little
sent twice.

RESUME_RUNS (default 3) sets how many kills; the report's 20 runs used RESUME_RUNS=20."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from pathlib import Path

import pytest

import p2pchat
from p2pchat.frontends.demo import ScriptedProcess

from .conftest import Launch, PeerFactory, connect, eventually
from .test_faults import fast_peer, keep_talking

WORKER = Path(__file__).with_name("file_worker.py")
SIZE = 8 * 1024 * 1024 + 12345
WINDOW = 256 * 1024
RUNS = int(os.environ.get("RESUME_RUNS", "3"))


async def reached(transfer: p2pchat.Transfer, offset: float, timeout: float = 30) -> None:
    """Wait until ``transfer.done`` reaches ``offset``, woken by each acknowledgement.

    A poll would wake up to a poll interval late, and a transfer on loopback can finish
    in that time: a kill meant for mid-file would then find the file whole."""
    async with asyncio.timeout(timeout):
        while transfer.done < offset:
            await transfer.changed()


async def receiver(launch: Launch, port: int, directory: Path) -> ScriptedProcess:
    process = await launch(
        "bob",
        [
            sys.executable,
            str(WORKER),
            "receiver",
            "bob",
            str(port),
            str(directory),
            str(WINDOW),
            str(directory / "inbox"),
        ],
    )
    await process.expect("ready")
    return process


@pytest.mark.parametrize("run", range(RUNS))
async def test_the_receiver_killed_at_a_random_point_resumes_from_its_offset(
    launch: Launch, tmp_path: Path, run: int
) -> None:
    point = random.Random(run).uniform(0.05, 0.9)  # where bob dies, as a share of the file
    source = tmp_path / "out" / "data.bin"
    source.parent.mkdir()
    source.write_bytes(os.urandom(SIZE))
    async with p2pchat.SignallingServer(port=0) as server:
        bob = await receiver(launch, server.port, tmp_path)
        alice = fast_peer(
            "alice", server.port, store=p2pchat.SqliteMessageStore(tmp_path / "alice.sqlite3")
        )
        stop = asyncio.Event()
        async with alice:
            talking = asyncio.create_task(keep_talking(alice, "bob", stop))
            try:
                await eventually(lambda: "bob" in alice.conversations, timeout=10)
                transfer = await alice.send_file("bob", source)
                await reached(transfer, point * SIZE)
                done_at_kill = transfer.done
                bob.process.send_signal(signal.SIGKILL)  # no await since: bob holds at most
                await bob.process.wait()  # a window more than he has acknowledged
                assert done_at_kill + WINDOW < SIZE, "killed too late to test a resume"
                bob = await receiver(launch, server.port, tmp_path)
                assert await asyncio.wait_for(transfer.wait(), 30) is None
                await bob.expect(r"^got .*data\.bin$", timeout=10)
            finally:
                stop.set()
                talking.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await talking
    received = tmp_path / "inbox" / "data.bin"
    assert received.read_bytes() == source.read_bytes()
    assert sorted(os.listdir(tmp_path / "inbox")) == ["data.bin"]
    # Resumed from what bob had stored, not from zero: at most a window sent twice.
    assert done_at_kill > 0
    assert transfer.sent < 1.2 * SIZE, f"{transfer.sent} bytes sent for {SIZE}"
    print(f"killed at {done_at_kill / SIZE:.0%}: sent {transfer.sent / SIZE:.3f} x the size")


async def test_the_sender_killed_mid_transfer_goes_on_after_its_restart(
    launch: Launch, tmp_path: Path
) -> None:
    source = tmp_path / "out" / "data.bin"
    source.parent.mkdir()
    source.write_bytes(os.urandom(SIZE))
    args = ["sender", "alice", "", str(tmp_path), str(WINDOW), "bob", str(source)]
    async with p2pchat.SignallingServer(port=0) as server:
        args[2] = str(server.port)
        bob = p2pchat.Peer(
            "bob", server=("127.0.0.1", server.port), file_window=WINDOW,
            store=p2pchat.SqliteMessageStore(tmp_path / "bob.sqlite3"),
        )  # fmt: skip
        async with bob:
            accepting = asyncio.create_task(accept_all(bob))
            try:
                alice = await launch("alice", [sys.executable, str(WORKER), *args])
                offer = await asyncio.wait_for(bob.next_file(), 15)
                transfer = await offer.accept(tmp_path / "inbox")
                await reached(transfer, SIZE // 3)
                at_kill = transfer.done
                alice.process.send_signal(signal.SIGKILL)
                await alice.process.wait()
                alice = await launch("alice", [sys.executable, str(WORKER), *args])
                assert (
                    await asyncio.wait_for(transfer.wait(), 30) == tmp_path / "inbox" / "data.bin"
                )
                await alice.expect("^done$", timeout=10)
            finally:
                accepting.cancel()
    assert 0 < at_kill < SIZE
    assert (tmp_path / "inbox" / "data.bin").read_bytes() == source.read_bytes()


async def accept_all(peer: p2pchat.Peer) -> None:
    while True:
        invitation = await peer.next_invitation()
        with contextlib.suppress(p2pchat.P2PChatError):
            await invitation.accept()


async def test_a_dropped_connection_goes_on_at_the_next_talk(
    make_peer: PeerFactory, tmp_path: Path
) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob", file_window=WINDOW)
    chat_a, _ = await connect(alice, bob)
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(SIZE))
    sending = await alice.send_file("bob", source)
    receiving = await (await asyncio.wait_for(bob.next_file(), 5)).accept(tmp_path / "in")
    await reached(receiving, SIZE // 4)
    await chat_a.close("going through a tunnel")
    at_drop = receiving.done
    assert receiving.state == "accepted"
    await connect(bob, alice)
    assert await asyncio.wait_for(receiving.wait(), 30) == tmp_path / "in" / "data.bin"
    await asyncio.wait_for(sending.wait(), 5)
    assert 0 < at_drop < SIZE
    assert sending.sent < 1.2 * SIZE
    assert (tmp_path / "in" / "data.bin").read_bytes() == source.read_bytes()


async def test_a_transfer_goes_on_while_the_server_is_gone(tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4 * SIZE))
    server = p2pchat.SignallingServer(port=0)
    await server.start()
    alice = fast_peer("alice", server.port)
    bob = fast_peer("bob", server.port, file_window=64 * 1024)  # slow: a sync each 16 KiB
    async with alice, bob:
        await connect(alice, bob)
        sending = await alice.send_file("bob", source)
        receiving = await (await asyncio.wait_for(bob.next_file(), 5)).accept(tmp_path / "in")
        await eventually(lambda: receiving.done > 0)
        await server.close()  # the talk is direct: it does not need the server
        await eventually(lambda: alice.state == "reconnecting")
        assert receiving.state == "accepted"  # (still going when the server had gone)
        assert await asyncio.wait_for(receiving.wait(), 30) == tmp_path / "in" / "data.bin"
        await asyncio.wait_for(sending.wait(), 5)
    assert (tmp_path / "in" / "data.bin").read_bytes() == source.read_bytes()
