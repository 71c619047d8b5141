"""Group conversations over real sockets and SQLite files: fan-out by talk and by mail,
exactly once, in order per sender, to members who are away too; limits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import p2pchat

from .conftest import connect, eventually
from .test_mailbox import Server

OPEN = {"rate_limit": None, "deposit_rate": None, "receipt_rate": None}


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Server]:
    """A server on SQLite files, without the rates that pace a person (the tests send
    hundreds of sealed copies in a second)."""
    hub = Server(tmp_path, **OPEN)
    await hub.start()
    yield hub
    await hub.stop()


async def take(group: p2pchat.Group, count: int, timeout: float = 20.0) -> list[p2pchat.Message]:
    """The next ``count`` messages of ``group``."""
    async with asyncio.timeout(timeout):
        return [await group.receive() for _ in range(count)]


def check_order(messages: list[p2pchat.Message], sent: dict[str, list[str]]) -> None:
    """Each message once; per sender, in the order sent."""
    ids = [m.id for m in messages]
    assert len(ids) == len(set(ids))
    for sender, bodies in sent.items():
        assert [m.body for m in messages if m.sender == sender and not m.notice] == bodies


async def test_group_of_four_one_away(hub: Server) -> None:
    dave = hub.peer("dave")
    await dave.start()  # known to the server, with a mailbox key; then away
    await dave.close()
    async with hub.peer("alice") as alice, hub.peer("bob") as bob, hub.peer("carol") as carol:
        await connect(alice, bob)  # alice and bob talk; the rest goes by mail
        group = await alice.create_group("friends", ["bob", "carol", "dave"])
        assert group.admin == "alice"
        assert group.members == ("alice", "bob", "carol", "dave")
        async with asyncio.timeout(10):
            bobs = await bob.next_group()
            carols = await carol.next_group()
        assert (bobs.id, bobs.name, bobs.members) == (group.id, "friends", group.members)
        assert (await take(bobs, 1))[0].notice == "change"
        assert (await take(carols, 1))[0].notice == "change"
        sent: dict[str, list[str]] = {"alice": [], "bob": []}
        mine: list[p2pchat.Message] = []
        for i in range(50):
            mine.append(await group.send(f"a{i}"))
            sent["alice"].append(f"a{i}")
            await bobs.send(f"b{i}")
            sent["bob"].append(f"b{i}")
        check_order(await take(carols, 100), sent)
        bob_got = await take(bobs, 50)
        check_order(bob_got, {"alice": sent["alice"]})
        assert all(m.group == group.id for m in bob_got)
        # Not shipped while dave is away; nothing through one-to-one paths.
        ours = [m for m in await alice.store.group_history(group.id) if m.sender == "alice"]
        assert not any(m.shipped for m in ours)
        await eventually(lambda: _delivered(group, mine[-1], {"bob", "carol"}))
        assert (await group.delivery(mine[-1]))["dave"] is False
        assert await bob.history("alice") == []

        async with hub.peer("dave") as dave:
            async with asyncio.timeout(10):
                daves = await dave.next_group()
            assert daves.members == group.members
            got = await take(daves, 101)
            assert got[0].notice == "change"
            assert got[0].body == "alice created friends"
            check_order(got[1:], sent)

            async def all_shipped() -> bool:
                history = await alice.store.group_history(group.id)
                return all(m.shipped for m in history if m.sender == "alice")

            await eventually(all_shipped, timeout=15)
            assert await group.delivery(mine[0]) == {"bob": True, "carol": True, "dave": True}
            # Each came once: nothing more waits.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await daves.receive()


async def test_groups_after_restart(hub: Server) -> None:
    async with hub.peer("alice") as alice, hub.peer("bob") as bob:
        group = await alice.create_group("pair", ["bob"])
        bobs = await asyncio.wait_for(bob.next_group(), 10)
        await group.send("hello")
        await take(bobs, 2)
    async with hub.peer("alice") as alice, hub.peer("bob") as bob:
        assert [g.id for g in await alice.groups()] == [group.id]
        assert [g.name for g in await bob.groups()] == ["pair"]
        with pytest.raises(TimeoutError):  # announced once only
            await asyncio.wait_for(bob.next_group(), 0.3)
        history = await (await bob.groups())[0].history()
        assert [m.body for m in history] == ["alice created pair", "hello"]


async def _delivered(group: p2pchat.Group, message: p2pchat.Message, members: set[str]) -> bool:
    state = await group.delivery(message)
    return all(state[m] for m in members)
