"""Group copies and mail in bursts together: what waits for a member who is away goes as
batches of their one-to-one messages and, between them, each group message's copy as a
letter of its own (with its roster), in the order written; each arrives once, and each
member's receipt marks that member's copy shipped.

Real sockets on 127.0.0.1, real SQLite files for the server and the peers.
"""

from __future__ import annotations

import asyncio

import msgspec

from p2pchat.peering.depositor import LETTER_BYTES, _batches
from p2pchat.shared.seal import MAX_BUNDLE, is_bundle
from p2pchat.store import Message

from .conftest import eventually
from .test_groups import hub, take  # noqa: F401 (hub: a fixture)
from .test_mailbox import Server, _items, _none_undeposited, all_shipped


def _copy(n: int) -> Message:
    """A group message's copy for bob, as the store hands it to the depositor."""
    group = "g" + "0" * 32
    message = Message.new("alice", group, f"g{n}")
    return msgspec.structs.replace(message, recipient="bob", group=group, group_version=1)


def test_a_group_copy_goes_alone_in_its_place_between_batches() -> None:
    ones = [Message.new("alice", "bob", f"o{n}") for n in range(6)]
    copies = [_copy(n) for n in range(3)]
    written = [*ones[:3], copies[0], copies[1], *ones[3:5], copies[2], ones[5]]
    letters = _batches(written)
    assert [[m.body for m in letter] for letter in letters] == [
        ["o0", "o1", "o2"],
        ["g0"],
        ["g1"],
        ["o3", "o4"],
        ["g2"],
        ["o5"],
    ]
    # The bounds of a batch hold beside the copies.
    many = [Message.new("alice", "bob", "x") for _ in range(MAX_BUNDLE + 1)]
    assert [len(letter) for letter in _batches([*many, _copy(9)])] == [MAX_BUNDLE, 1, 1]
    large = [Message.new("alice", "bob", "y" * (LETTER_BYTES // 3)) for _ in range(4)]
    assert [len(letter) for letter in _batches(large)] == [2, 2]


async def _known(server: Server, *names: str) -> None:
    """Each logs in once (known to the server, with a mailbox key), then is away."""
    for name in names:
        async with server.peer(name):
            pass


async def test_group_copies_and_a_burst_to_members_away(hub: Server) -> None:  # noqa: F811
    """Alice writes bob 30, then 20 to the group of bob and carol, then bob 30 more, both
    away: bob's mailbox holds a few batches and the group's 21 copies as letters of their
    own; back, bob has each once, in order, and every copy comes back shipped, by bob's
    receipts and carol's (two receipts for the same ids, kept as two)."""
    await _known(hub, "bob", "carol")
    async with hub.peer("alice") as alice:
        group = await alice.create_group("away", ["bob", "carol"])
        before = [await alice.send("bob", f"o{n}") for n in range(30)]
        mine = [await group.send(f"g{n}") for n in range(20)]
        after = [await alice.send("bob", f"p{n}") for n in range(30)]
        await eventually(lambda: _none_undeposited(alice), timeout=20)
        assert hub.server is not None
        items = await _items(hub.server, "bob")
        singles = {i.item for i in items if not is_bundle(i.item)}
        copies = {m.id for m in mine}
        assert copies <= singles  # each copy a letter of its own
        assert len(singles - copies) <= 2  # the notice, and at most a lone one-to-one
        assert len(items) < 21 + 60  # the one-to-one went in batches
    async with hub.peer("bob") as bob:
        ones = [await asyncio.wait_for(bob.next_message(), 10) for _ in range(60)]
        assert [m.body for m in ones] == [m.body for m in [*before, *after]]
        bobs = await asyncio.wait_for(bob.next_group(), 10)
        got = await take(bobs, 21)
        assert [m.body for m in got if not m.notice] == [m.body for m in mine]
        assert [m.notice for m in got].count("change") == 1
        assert [m.body for m in await bob.history("alice")] == [m.body for m in ones]
    async with hub.peer("carol") as carol:
        carols = await asyncio.wait_for(carol.next_group(), 10)
        assert [m.body for m in await take(carols, 21) if not m.notice] == [m.body for m in mine]
    async with hub.peer("alice") as alice:  # the receipts waited for her
        await eventually(lambda: all_shipped(alice, "bob"), timeout=20)
        group = (await alice.groups())[0]

        async def copies_shipped() -> bool:
            history = await alice.store.group_history(group.id)
            return all(m.shipped for m in history if m.sender == "alice")

        await eventually(copies_shipped, timeout=20)
        for message in mine:
            assert await group.delivery(message) == {"bob": True, "carol": True}
    async with hub.peer("bob") as bob:  # nothing came twice
        bobs = (await bob.groups())[0]
        for waiting in (bob.next_message(), bobs.receive()):
            task = asyncio.ensure_future(waiting)
            done, _ = await asyncio.wait({task}, timeout=0.3)
            task.cancel()
            assert not done
