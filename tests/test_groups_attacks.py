"""Groups against a hostile server (replaying or altering what its mailbox keeps) and a
hostile member (forging a membership change): each caught, shown once, logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import p2pchat
from p2pchat.peering.roster import record_of, roster_of, signed_roster

from .conftest import eventually
from .test_groups import OPEN, take
from .test_mailbox import Server, tampering


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Server]:
    hub = Server(tmp_path, **OPEN)
    await hub.start()
    yield hub
    await hub.stop()


async def _known(hub: Server, *names: str) -> None:
    for name in names:
        async with hub.peer(name):
            pass


async def test_a_replayed_group_message_and_change_are_shown_once(hub: Server) -> None:
    await tampering(hub, "replay")
    await _known(hub, "bob", "erin")
    async with hub.peer("alice") as alice:
        group = await alice.create_group("club", ["bob"])
        await group.send("once only")
        await group.add("erin")
        await group.send("twice? no")
    for _ in range(2):  # handed out again at each login, twice each time
        async with hub.peer("bob") as bob:
            await eventually(lambda: _count(bob, group.id, 4))
    async with hub.peer("bob") as bob:
        bobs = await asyncio.wait_for(bob.next_group(), 5)
        got = [m.body for m in await take(bobs, 4)]
        assert got == ["alice created club", "once only", "alice added erin", "twice? no"]
        assert bobs.members == ("alice", "bob", "erin")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(bobs.receive(), 0.5)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(bob.next_group(), 0.3)


async def _count(peer: p2pchat.Peer, group: str, count: int) -> bool:
    return len(await peer.store.group_history(group)) == count


async def test_an_altered_group_message_is_refused_and_logged(
    hub: Server, caplog: pytest.LogCaptureFixture
) -> None:
    await tampering(hub, "alter")
    await _known(hub, "bob")
    async with hub.peer("alice") as alice:
        group = await alice.create_group("club", ["bob"])
        await group.send("what the server would like to change")
    with caplog.at_level(logging.WARNING, logger="p2pchat"):
        async with hub.peer("bob") as bob:
            await eventually(lambda: "refused a mail item" in caplog.text)
            assert await bob.store.group_history(group.id) == []
            assert await bob.groups() == []


@pytest.mark.parametrize("claim", ["as the admin", "as itself"])
async def test_a_forged_membership_change_is_refused_by_every_member(
    hub: Server, claim: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _known(hub, "mallory")
    async with hub.peer("alice") as alice, hub.peer("bob") as bob, hub.peer("carol") as carol:
        group = await alice.create_group("club", ["bob", "carol"])
        async with asyncio.timeout(10):
            bobs, carols = await bob.next_group(), await carol.next_group()
        await take(bobs, 1)
        await take(carols, 1)
        # bob, a member, forges "alice added mallory" (signed by his own key), or names
        # himself admin; his copy of the group believes it, and he sends under it.
        forged = signed_roster(
            bob.identity.sign,
            group=group.id,
            salt=roster_of(bob._groups._records[group.id].roster).salt,
            name="club",
            admin="alice" if claim == "as the admin" else "bob",
            members=[*group.members, "mallory"],
            version=group.version + 1,
            change="add",
            subject="mallory",
        )
        await bob._groups._keep(record_of(forged, active=True, announced=True))
        with caplog.at_level(logging.WARNING, logger="p2pchat"):
            await bobs.send("mallory is one of us now")
            await eventually(lambda: caplog.text.count("refused group message") >= 2)
        assert "mallory" not in group.members
        assert "mallory" not in carols.members
        for holder in (group, carols):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(holder.receive(), 0.3)
        # The real admin goes on, untouched.
        await group.send("still us")
        assert (await take(carols, 1))[0].body == "still us"


async def test_a_member_cannot_claim_a_group_to_one_who_has_not_seen_it(
    hub: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """bob, a member, tells dave (away: he learns the group from whichever copy reaches
    him first) that he made alice's group, with his own signature: dave refuses it, in
    whatever order the two copies come, and takes alice's."""
    await _known(hub, "dave", "mallory")
    async with hub.peer("alice") as alice, hub.peer("bob") as bob:
        group = await alice.create_group("club", ["bob", "dave"])
        bobs = await asyncio.wait_for(bob.next_group(), 10)
        await take(bobs, 1)
        claim = signed_roster(
            bob.identity.sign,
            group=group.id,
            salt=roster_of(bob._groups._records[group.id].roster).salt,
            name="club",
            admin="bob",
            members=["alice", "bob", "dave", "mallory"],
            version=1,
            change="create",
        )
        await bob._groups._keep(record_of(claim, active=True, announced=True))
        await bobs.send("I made this group")
        await group.send("from the admin")
        await eventually(lambda: _count(alice, group.id, 2))
    with caplog.at_level(logging.WARNING, logger="p2pchat"):
        async with hub.peer("dave") as dave:
            daves = await asyncio.wait_for(dave.next_group(), 10)
            got = [m.body for m in await take(daves, 2)]
            await eventually(lambda: "was not made by bob" in caplog.text)
    assert got == ["alice created club", "from the admin"]
    assert daves.admin == "alice"
    assert "mallory" not in daves.members
