"""A bounded load test, all on 127.0.0.1: 1000 peers log in at once, list, and half of
them invite the other half and exchange a message. Reports time and server memory."""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from pathlib import Path

import pytest

import p2pchat
from p2pchat.frontends.demo import ScriptedProcess, command

from .conftest import Launch

PEERS = 1000


def server_memory(pid: int) -> tuple[int, int]:
    """(resident now, peak) in KiB, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


@pytest.fixture
async def server_process(launch: Launch, tmp_path: Path) -> tuple[ScriptedProcess, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 8 * PEERS
    if soft < needed <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    process = await launch(
        "server", [*command("p2pchat-server"), "--port", "0", "--db", str(tmp_path / "s.sqlite3")]
    )
    port = int((await process.expect(r"listening on .*:(\d+)")).group(1))
    return process, port


async def test_a_thousand_peers(
    server_process: tuple[ScriptedProcess, int], capsys: pytest.CaptureFixture[str]
) -> None:
    process, port = server_process
    before = server_memory(process.process.pid)
    # All 1000 peers share this one event loop, which lags by seconds here when the
    # machine is busy (a real peer has a loop of its own): give the dial and its TLS
    # handshake the time that lag takes, and leave out the NAT traversal, which loopback
    # does not need. The test measures the server, not how a slow loop picks routes.
    peers = [
        p2pchat.Peer(
            f"load{n:04d}",
            server=("127.0.0.1", port),
            traversal=False,
            direct_timeout=60,
            hello_timeout=60,
            relay_after=60,
        )
        for n in range(PEERS)
    ]
    half = PEERS // 2
    started = time.perf_counter()
    async with asyncio.timeout(180):  # bounded: the whole run, or the test fails
        await asyncio.gather(*(peer.start() for peer in peers))
        logged_in = time.perf_counter()
        after_login = server_memory(process.process.pid)
        listed = await asyncio.gather(*(peer.online() for peer in peers))
        assert all(len(names) == PEERS for names in listed)

        async def pair(inviter: p2pchat.Peer, invitee: p2pchat.Peer) -> tuple[str, str]:
            inviting = asyncio.create_task(inviter.invite(invitee.name, timeout=60))
            chat_b = await (await invitee.next_invitation()).accept()
            chat_a = await inviting
            await chat_a.send(f"hello {invitee.name}")
            await chat_b.send(f"hello {inviter.name}")
            assert chat_a.route == chat_b.route == "direct"
            heard_b, heard_a = await chat_b.receive(), await chat_a.receive()
            await chat_a.wait_acknowledged()
            await chat_b.wait_acknowledged()
            return heard_b.body, heard_a.body

        exchanged = await asyncio.gather(*(pair(peers[n], peers[n + half]) for n in range(half)))
        talked = time.perf_counter()
        assert exchanged == [
            (f"hello {peers[n + half].name}", f"hello {peers[n].name}") for n in range(half)
        ]
        during = server_memory(process.process.pid)
        await asyncio.gather(*(peer.close() for peer in peers))
    with capsys.disabled():
        sys.stderr.write(
            f"\nload: {PEERS} peers logged in in {logged_in - started:.1f} s; listed, "
            f"{half} invitations accepted over TLS and {2 * half} messages exchanged and "
            f"acked in {talked - logged_in:.1f} s more (total {talked - started:.1f} s); "
            f"server memory {before[0] / 1024:.0f} MiB idle, {after_login[0] / 1024:.0f} MiB "
            f"after the logins, {during[0] / 1024:.0f} MiB after all the rest "
            f"(peak {during[1] / 1024:.0f} MiB)\n"
        )
