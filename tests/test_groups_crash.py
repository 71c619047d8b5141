"""A group member SIGKILLed while messages stream in, then started again: every message
stored once, in order per sender; none handed over twice."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

import p2pchat
from p2pchat.frontends.demo import ScriptedProcess

from .conftest import Launch, eventually
from .test_groups import OPEN
from .test_mailbox import Server

WORKER = Path(__file__).with_name("group_worker.py")
COUNT = 100  # from each of two senders


async def test_a_member_killed_while_receiving_loses_nothing_and_repeats_nothing(
    launch: Launch, tmp_path: Path
) -> None:
    hub = Server(tmp_path, **OPEN)
    await hub.start()

    async def carol_process() -> ScriptedProcess:
        args = [sys.executable, str(WORKER), "carol", str(hub.port), str(tmp_path)]
        started = await launch("carol", args)
        await started.expect("^ready$")
        return started

    try:
        carol = await carol_process()
        async with hub.peer("alice") as alice, hub.peer("bob") as bob:
            group = await alice.create_group("crash", ["bob", "carol"])
            await carol.expect("^in crash$")
            bobs = await asyncio.wait_for(bob.next_group(), 10)

            async def send() -> None:
                for i in range(COUNT):
                    await group.send(f"a{i:03d}")
                    await bobs.send(f"b{i:03d}")

            sending = asyncio.create_task(send())
            await carol.expect(r"^got alice a030$", timeout=30)  # mid-stream
            carol.process.send_signal(signal.SIGKILL)
            await carol.process.wait()
            await sending
            before = list(carol.output)
            carol = await carol_process()
            last = f"{COUNT - 1:03d}"
            await carol.expect_all(f"^got alice a{last}$", f"^got bob b{last}$", timeout=60)

            async def all_shipped() -> bool:
                ours = [m for m in await group.history() if m.sender == "alice"]
                return all(m.shipped for m in ours)

            await eventually(all_shipped, timeout=30)
        shown = [line for line in [*before, *carol.output] if line.startswith("got ")]
        assert len(shown) == len(set(shown))  # nothing handed over twice
        for sender, prefix in (("alice", "a"), ("bob", "b")):
            seen = [
                int(m.group(1))
                for line in shown
                if (m := re.match(rf"got {sender} {prefix}(\d+)", line))
            ]
            assert seen == sorted(seen)
    finally:
        await hub.stop()
    store = p2pchat.SqliteMessageStore(tmp_path / "carol.sqlite3")
    await store.start()
    try:
        history = await store.group_history(group.id)
    finally:
        await store.close()
    assert len({(m.sender, m.id) for m in history}) == len(history)
    for sender, prefix in (("alice", "a"), ("bob", "b")):
        bodies = [m.body for m in history if m.sender == sender and not m.notice]
        assert bodies == [f"{prefix}{i:03d}" for i in range(COUNT)]
