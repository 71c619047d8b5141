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
        talk_a, talk_b = await connect(alice, bob)  # they talk; the rest goes by mail
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
        for elsewhere in (talk_b.receive(), bob.next_message(), carol.next_message()):
            with pytest.raises(TimeoutError):  # only through their group
                await asyncio.wait_for(elsewhere, 0.2)
        assert talk_a.route == "direct"

        async with hub.peer("dave") as dave:
            async with asyncio.timeout(10):
                daves = await dave.next_group()
            assert daves.members == group.members
            got = await take(daves, 101)  # bob's may come before alice's first: no order
            notices = [m.body for m in got if m.notice]
            assert notices == ["alice created friends"]
            check_order(got, sent)

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


async def test_removal_leave_and_who_may_change(hub: Server) -> None:
    async with (
        hub.peer("alice") as alice,
        hub.peer("bob") as bob,
        hub.peer("carol") as carol,
        hub.peer("erin") as erin,
    ):
        group = await alice.create_group("club", ["bob", "carol"])
        async with asyncio.timeout(10):
            bobs, carols = await bob.next_group(), await carol.next_group()
        await take(bobs, 1)
        await take(carols, 1)
        with pytest.raises(p2pchat.NotGroupAdmin):
            await bobs.add("erin")
        with pytest.raises(p2pchat.NotGroupAdmin):
            await bobs.remove("carol")
        with pytest.raises(p2pchat.UnknownUser):
            await group.add("nobody")

        await group.add("erin")
        erins = await asyncio.wait_for(erin.next_group(), 10)
        assert (await take(erins, 1))[0].body == "alice added erin"
        assert (await take(bobs, 1))[0].body == "alice added erin"
        assert (await take(carols, 1))[0].body == "alice added erin"
        assert bobs.members == ("alice", "bob", "carol", "erin")

        await group.remove("carol")
        assert (await take(carols, 1))[0].body == "alice removed carol"
        assert not carols.active
        with pytest.raises(p2pchat.NotGroupMember):
            await carols.send("still here?")
        with pytest.raises(p2pchat.NotGroupMember):
            await carols.receive()
        await take(bobs, 1)
        await take(erins, 1)
        assert tuple(bobs.members) == ("alice", "bob", "erin")
        after = await group.send("after carol")
        await bobs.send("bob after carol")
        assert {m.body for m in await take(erins, 2)} == {"after carol", "bob after carol"}
        assert (await take(bobs, 1))[0].body == "after carol"
        assert not any("after carol" in m.body for m in await carol.store.group_history(group.id))
        assert (await group.delivery(after)).keys() == {"bob", "erin"}

        await group.add("carol")  # back: told again, and it reads again
        again = await asyncio.wait_for(carol.next_group(), 10)
        assert again is carols
        assert carols.active
        assert (await take(carols, 1))[0].body == "alice added carol"
        await take(bobs, 1)
        await take(erins, 1)
        await group.remove("carol")
        await take(carols, 1)
        await take(bobs, 1)
        await take(erins, 1)

        await erins.leave()
        assert not erins.active
        assert (await take(bobs, 1))[0].body == "erin left"
        await eventually(lambda: group.members == ("alice", "bob"))
        assert (await take(bobs, 1))[0].body == "alice removed erin"  # the admin's word
        with pytest.raises(p2pchat.NotGroupMember):
            await erins.send("gone")
        assert [g.id for g in await erin.groups()] == []


async def test_limits(hub: Server) -> None:
    names = [f"m{i}" for i in range(4)]
    for name in names:
        async with hub.peer(name):
            pass
    async with hub.peer("alice", max_group_members=3, max_groups=1) as alice:
        with pytest.raises(p2pchat.TooManyMembers):
            await alice.create_group("big", names[:3])
        with pytest.raises(p2pchat.InvalidGroupName):
            await alice.create_group("bad\x1b[2Jname", names[:1])
        with pytest.raises(p2pchat.InvalidGroupName):
            await alice.create_group("x" * 65, names[:1])
        group = await alice.create_group("small", names[:2])
        with pytest.raises(p2pchat.TooManyMembers):
            await group.add("m3")
        with pytest.raises(p2pchat.TooManyGroups):
            await alice.create_group("second", names[:1])
        with pytest.raises(p2pchat.MessageTooLarge):
            await group.send("x" * (alice.settings.max_message_size + 1))
        assert await group.history() != []
    with pytest.raises(ValueError, match="max_group_members"):
        p2pchat.Peer("x", max_group_members=2000)
    # A receiver holds others to its own limits: over max_groups, a new group is refused.
    async with hub.peer("m0", max_groups=1) as m0, hub.peer("m1") as m1:
        await asyncio.wait_for(m0.next_group(), 10)  # alice's, left in the mailbox
        await m1.create_group("another", ["m0"])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(m0.next_group(), 1.0)
